-- A request whose prompt was over its tier's `sla_max_prompt_tokens` (the addendum's "agreed
-- burst caps"): its first token is not judged by the SLA (not slow, not in the p95), only
-- whether it failed.
ALTER TABLE usage ADD COLUMN ttft_exempt INTEGER NOT NULL DEFAULT 0 CHECK (ttft_exempt IN (0, 1));
