-- Schema version 3: the client is stored as its 17-byte binary key (the 16 address bytes,
-- IPv4 as ::ffff:a.b.c.d, then the prefix length in the 128-bit space; see ClientKey::to_blob).
-- Blobs compare like the keys, so the primary key finds one client and a network (a range) by
-- index, and a row takes about half the space of the text form. The secondary indexes are gone:
-- each cost as much disk as the table; `list --node` and expiry scan the table in bounded steps.
-- pb_client_key(text) is a function the balancer registers for this step (rows whose client is
-- not an address are dropped: the map never loaded them either).
CREATE TABLE affinity_v3 (
  cluster     TEXT    NOT NULL,
  client      BLOB    NOT NULL,
  node        TEXT    NOT NULL,
  first_seen  INTEGER NOT NULL,
  last_seen   INTEGER NOT NULL,
  connections INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (cluster, client)
) WITHOUT ROWID;

INSERT OR REPLACE INTO affinity_v3 (cluster, client, node, first_seen, last_seen, connections)
SELECT cluster, key, node, first_seen, last_seen, connections
FROM (SELECT cluster, pb_client_key(client) AS key, node, first_seen, last_seen, connections
      FROM affinity)
WHERE key IS NOT NULL
ORDER BY cluster, key;

DROP TABLE affinity;
ALTER TABLE affinity_v3 RENAME TO affinity;
