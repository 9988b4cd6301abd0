-- A device's evidence moves into its row: one JSON list of claims, each
-- [attribute, value (canonical JSON text), protocol, detail, ts, weight, run_id], in the order of the old
-- table's ids (the order claims were first made). A row a claim made SQLite's own work most of the cost of
-- writing an inventory (store/sqlite.py, `_claims_added`). PostgreSQL: JSONB.
ALTER TABLE devices ADD COLUMN evidence TEXT NOT NULL DEFAULT '[]';

-- Numbers through printf('%!.17g'): json_array would write a REAL with 15 significant digits, and time
-- stamps need 17 to read back as the same float.
UPDATE devices SET evidence = (
    SELECT json_group_array(json_array(
        attribute, value, protocol, detail,
        CASE WHEN ts IS NULL THEN NULL ELSE json(printf('%!.17g', ts)) END,
        json(printf('%!.17g', weight)),
        run_id))
    FROM (SELECT * FROM evidence WHERE device_key = devices.key ORDER BY id)
);

DROP TABLE evidence;
