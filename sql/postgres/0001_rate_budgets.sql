-- The request budget of each API key (pipeline/ratelimit.py), shared by every host: the times of the last
-- `capacity` grants in a ring, on the server's clock. `budget` is the service and a hash of the key, never the key.
create table rate_budgets (
    budget        text primary key,
    capacity      integer not null,
    head          integer not null default 0,
    blocked_until double precision not null default 0,  -- epoch seconds, server clock
    stamps        double precision[] not null            -- epoch seconds of the last grants, a ring
);
