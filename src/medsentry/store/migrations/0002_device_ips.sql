-- A device's addresses (devices.ips), indexed, so it can be found by IP without scanning JSON lists.

CREATE TABLE device_ips (
    device_key TEXT NOT NULL REFERENCES devices (key) ON DELETE CASCADE,
    ip TEXT NOT NULL,
    PRIMARY KEY (device_key, ip)
);
CREATE INDEX device_ips_ip ON device_ips (ip);

-- PostgreSQL: CROSS JOIN LATERAL jsonb_array_elements_text(d.ips)
INSERT INTO device_ips (device_key, ip)
SELECT d.key, j.value FROM devices AS d, json_each(d.ips) AS j;
