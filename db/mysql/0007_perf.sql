-- Performance of the Omaha path (issue 5). Keep in step with db/sqlite/0007_perf.sql.
-- Re-runnable: CREATE TABLE IF NOT EXISTS, INSERT IGNORE; an index that already exists is
-- skipped by Db::exec_script (MySQL 8 has no CREATE INDEX IF NOT EXISTS).

-- Incremented in the same transaction as every write to a configuration table: replicas compare
-- it to invalidate their in-process configuration caches.
CREATE TABLE IF NOT EXISTS rb_config_generation (
    id INT NOT NULL PRIMARY KEY,
    generation BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
INSERT IGNORE INTO rb_config_generation (id, generation) VALUES (1, 0);

-- Grants per group and minute (an upper bound of the grants in a policy window).
CREATE TABLE IF NOT EXISTS rollout_grant_buckets (
    group_id VARCHAR(64) NOT NULL,
    bucket_ts BIGINT NOT NULL,
    grants BIGINT NOT NULL,
    PRIMARY KEY (group_id, bucket_ts),
    FOREIGN KEY (group_id) REFERENCES rollout_groups(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
INSERT IGNORE INTO rollout_grant_buckets (group_id, bucket_ts, grants)
    SELECT group_id, last_update_granted_ts - (last_update_granted_ts % 60000), COUNT(*)
    FROM instance_applications
    WHERE group_id IS NOT NULL AND last_update_granted_ts IS NOT NULL
    GROUP BY group_id, last_update_granted_ts - (last_update_granted_ts % 60000);

CREATE INDEX idx_instance_applications_group_granted
    ON instance_applications (group_id, last_update_granted_ts);
CREATE INDEX idx_instance_applications_group_version
    ON instance_applications (group_id, version);

-- The group page's stats (status × version over active instances) read from the index alone,
-- in GROUP BY order: no temporary b-tree for 100,000 instances.
CREATE INDEX idx_instance_applications_group_stats
    ON instance_applications (group_id, status, version, last_check_for_updates);
