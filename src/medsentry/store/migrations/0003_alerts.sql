-- Detection alerts with a triage state, deduplicated across runs by the alert's stable id (a hash of rule,
-- attacker, victim set and first-seen bucket, see medsentry.detect.engine). Alerts hold no PHI: addresses,
-- field names and salted hashes only. JSON TEXT -> JSONB on PostgreSQL.

CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    technique TEXT NOT NULL,         -- JSON object {id, name, matrix}
    severity TEXT NOT NULL,
    attacker_mac TEXT,
    attacker_ip TEXT,
    victims TEXT NOT NULL,           -- JSON list of {mac, ip}
    first_seen REAL NOT NULL,        -- traffic time, epoch seconds
    last_seen REAL NOT NULL,
    count INTEGER NOT NULL,
    run_count INTEGER NOT NULL,      -- the part of count that last_run contributed
    evidence TEXT NOT NULL,          -- JSON list, bounded
    explanation TEXT NOT NULL,
    id_bucket_s INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('new', 'acknowledged', 'closed')),
    state_changed REAL NOT NULL,     -- wall clock
    first_run INTEGER REFERENCES runs (id),
    last_run INTEGER REFERENCES runs (id)
);
CREATE INDEX alerts_last_seen ON alerts (last_seen);
CREATE INDEX alerts_state ON alerts (state, last_seen);
CREATE INDEX alerts_rule ON alerts (rule);

-- Every address an alert names (attacker and victims), so alerts can be found by device without JSON scans.
CREATE TABLE alert_addresses (
    alert_id TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    address TEXT NOT NULL,           -- a MAC or an IP
    role TEXT NOT NULL CHECK (role IN ('attacker', 'victim')),
    PRIMARY KEY (alert_id, address, role)
);
CREATE INDEX alert_addresses_address ON alert_addresses (address);

CREATE TABLE alert_history (
    id INTEGER PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    ts REAL NOT NULL,                -- wall clock
    old_state TEXT,                  -- NULL: the alert was first stored
    new_state TEXT NOT NULL,
    actor TEXT NOT NULL,             -- a user name, or "medsentry" for changes a run made
    note TEXT,
    run_id INTEGER REFERENCES runs (id)
);
CREATE INDEX alert_history_alert ON alert_history (alert_id, ts);
