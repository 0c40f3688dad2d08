-- Schema version 2: a listener redirected at run time (`pbadmin route LISTENER CLUSTER`) keeps
-- its route across restarts. set_at is unix seconds (UTC).
CREATE TABLE listener_route (
  listener TEXT PRIMARY KEY,
  cluster  TEXT NOT NULL,
  set_at   INTEGER
);
