-- Performance of the Omaha path (issue 5). Keep in step with db/mysql/0007_perf.sql.

-- Incremented in the same transaction as every write to a configuration table (applications,
-- groups, channels, packages, blacklists, CoreOS actions): replicas compare it to invalidate
-- their in-process configuration caches.
CREATE TABLE IF NOT EXISTS rb_config_generation (
    id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL
);
INSERT OR IGNORE INTO rb_config_generation (id, generation) VALUES (1, 0);

-- Grants per group and minute, written with each grant. Their sum over a policy window is an
-- upper bound of the instances granted in that window, so an update check only counts
-- instances exactly when the bound reaches the policy's limit.
CREATE TABLE IF NOT EXISTS rollout_grant_buckets (
    group_id TEXT NOT NULL REFERENCES rollout_groups(id) ON DELETE CASCADE,
    bucket_ts INTEGER NOT NULL,
    grants INTEGER NOT NULL,
    PRIMARY KEY (group_id, bucket_ts)
);
INSERT OR IGNORE INTO rollout_grant_buckets (group_id, bucket_ts, grants)
    SELECT group_id, last_update_granted_ts - (last_update_granted_ts % 60000), COUNT(*)
    FROM instance_applications
    WHERE group_id IS NOT NULL AND last_update_granted_ts IS NOT NULL
    GROUP BY group_id, last_update_granted_ts - (last_update_granted_ts % 60000);

-- Exact counting of recent grants, and "is any active instance still behind" by seeking
-- distinct versions instead of scanning the group.
CREATE INDEX IF NOT EXISTS idx_instance_applications_group_granted
    ON instance_applications (group_id, last_update_granted_ts);
CREATE INDEX IF NOT EXISTS idx_instance_applications_group_version
    ON instance_applications (group_id, version);

-- The group page's stats (status × version over active instances) read from the index alone,
-- in GROUP BY order: no temporary b-tree for 100,000 instances.
CREATE INDEX IF NOT EXISTS idx_instance_applications_group_stats
    ON instance_applications (group_id, status, version, last_check_for_updates);
