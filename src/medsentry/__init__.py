"""medsentry: passive discovery, vulnerability intelligence and threat monitoring
for medical device networks."""

__version__ = "0.1.0"
