-- One SLI definition, counted once per request where the request is classified (the same
-- function feeds these rollups and the gateway's `switchyard_sli_requests_total`):
--   bad        requests that got a 5xx (a stream broken after its 200 and a request its
--              gateway died under included) or a first token 5 s or more after arrival; a
--              request both slow and failed is one bad request. 429s (the tenant's own limits)
--              are never bad: they leave the denominator.
--   throttled  requests refused for the fleet's lack of capacity (shed: 503 overloaded_shed),
--              the provider-side throttling the addendum's "429 ≤ 1%" is about; the tenant's
--              own-limit 429s are excluded from it, as the addendum says.
ALTER TABLE sli_minutes ADD COLUMN bad INTEGER NOT NULL DEFAULT 0 CHECK (bad >= 0);
ALTER TABLE sli_minutes ADD COLUMN throttled INTEGER NOT NULL DEFAULT 0 CHECK (throttled >= 0);
UPDATE sli_minutes SET bad = MIN(errors_5xx + ttft_slow, requests - errors_429);

ALTER TABLE sli_refusals ADD COLUMN throttled INTEGER NOT NULL DEFAULT 0 CHECK (throttled IN (0, 1));
