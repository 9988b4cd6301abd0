-- The device inventory, SQLite dialect. Kept portable where it costs nothing; for PostgreSQL:
-- REAL epoch seconds -> DOUBLE PRECISION, JSON TEXT -> JSONB, INTEGER 0/1 flags -> BOOLEAN,
-- "id INTEGER PRIMARY KEY" (SQLite's rowid alias) -> BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY.

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    ended REAL NOT NULL,
    inputs TEXT NOT NULL,            -- JSON list: pcap paths, "live:<iface>", Zeek log folders
    packets INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    flows INTEGER NOT NULL,
    observations INTEGER NOT NULL,
    malformed TEXT NOT NULL          -- JSON object: dissector -> count
);

CREATE TABLE devices (
    key TEXT PRIMARY KEY,            -- the MAC, or the first IP of a routed-only device
    mac TEXT,
    ips TEXT NOT NULL,               -- JSON list, most recently seen first
    device_class TEXT NOT NULL,
    vendor TEXT,
    model TEXT,
    firmware TEXT,
    os TEXT,
    hostname TEXT,
    label TEXT,
    confidence REAL NOT NULL,
    first_seen REAL,
    last_seen REAL,
    mac_randomized INTEGER NOT NULL,
    identities TEXT NOT NULL,        -- JSON object
    first_run INTEGER REFERENCES runs (id),
    last_run INTEGER REFERENCES runs (id)
);
CREATE INDEX devices_class ON devices (device_class);
CREATE INDEX devices_last_seen ON devices (last_seen);

CREATE TABLE services (
    device_key TEXT NOT NULL REFERENCES devices (key) ON DELETE CASCADE,
    transport TEXT NOT NULL,
    port INTEGER NOT NULL,
    role TEXT NOT NULL,
    app TEXT,
    peers INTEGER NOT NULL,
    PRIMARY KEY (device_key, transport, port, role)
);

-- One row per distinct claim; a repeat refreshes ts/weight instead of adding a row.
CREATE TABLE evidence (
    id INTEGER PRIMARY KEY,
    device_key TEXT NOT NULL REFERENCES devices (key) ON DELETE CASCADE,
    attribute TEXT NOT NULL,
    value TEXT NOT NULL,             -- JSON
    protocol TEXT NOT NULL,
    detail TEXT NOT NULL,
    ts REAL,
    weight REAL NOT NULL,
    run_id INTEGER REFERENCES runs (id),
    UNIQUE (device_key, attribute, protocol, detail, value)
);

CREATE TABLE device_changes (
    id INTEGER PRIMARY KEY,
    device_key TEXT NOT NULL REFERENCES devices (key) ON DELETE CASCADE,
    attribute TEXT NOT NULL,
    old TEXT,
    new TEXT,
    ts REAL NOT NULL,
    run_id INTEGER REFERENCES runs (id)
);
CREATE INDEX device_changes_device ON device_changes (device_key, ts);
