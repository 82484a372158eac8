//! What the agent keeps between runs: its machine id (one Omaha instance per host) and the
//! versions it installed, by image id (so a container on a mutable tag like `latest` still
//! reports the version it was updated to).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

const MACHINE_ID_FILE: &str = "machine-id";
const VERSIONS_FILE: &str = "versions.json";
/// Bound on remembered image versions; the oldest entries are dropped beyond it.
const MAX_VERSIONS: usize = 512;

fn valid_machine_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The persisted machine id in `state_dir` (created on first run), or, without a state dir, one
/// derived from the Docker daemon's id (itself persisted by dockerd, so stable per host).
pub fn machine_id(state_dir: Option<&Path>, docker_id: &str) -> anyhow::Result<String> {
    let Some(dir) = state_dir else {
        anyhow::ensure!(
            !docker_id.trim().is_empty(),
            "the Docker daemon reports no id; give the agent a state directory"
        );
        let digest = Sha256::digest(format!("rollbridge-agent:{}", docker_id.trim()));
        return Ok(hex::encode(&digest[..16]));
    };
    let path = dir.join(MACHINE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_string();
            anyhow::ensure!(
                valid_machine_id(&id),
                "{} does not hold a valid machine id (1-128 printable characters)",
                path.display()
            );
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the state directory {}", dir.display()))?;
            let id = uuid::Uuid::new_v4().simple().to_string();
            write_atomically(&path, id.as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Image id → version installed by this agent.
#[derive(Debug, Default)]
pub struct Versions {
    path: Option<PathBuf>,
    /// (image id, version) in insertion order.
    entries: Vec<(String, String)>,
}

impl Versions {
    /// Loads `versions.json` from the state dir (a missing or unreadable file is an empty memory:
    /// the versions then come from tags and labels).
    pub fn load(state_dir: Option<&Path>) -> Self {
        let path = state_dir.map(|d| d.join(VERSIONS_FILE));
        let entries = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<Vec<(String, String)>>(&b).ok())
            .unwrap_or_default();
        Self { path, entries }
    }

    pub fn get(&self, image_id: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(id, _)| id == image_id)
            .map(|(_, v)| v.as_str())
    }

    pub fn remember(&mut self, image_id: &str, version: &str) {
        self.entries.retain(|(id, _)| id != image_id);
        self.entries
            .push((image_id.to_string(), version.to_string()));
        if self.entries.len() > MAX_VERSIONS {
            let excess = self.entries.len() - MAX_VERSIONS;
            self.entries.drain(..excess);
        }
        if let Some(path) = &self.path {
            let result = serde_json::to_vec(&self.entries)
                .map_err(anyhow::Error::from)
                .and_then(|b| {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    write_atomically(path, &b)
                });
            if let Err(e) = result {
                tracing::warn!(error = %e, "agent: saving installed versions failed");
            }
        }
    }
}

/// The id of the container this process runs in, if any: Docker bind-mounts the container's
/// `hostname`/`hosts` files from `/var/lib/docker/containers/<id>/`, visible in mountinfo.
pub fn own_container_id() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    container_id_from_mountinfo(&text)
}

fn container_id_from_mountinfo(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (_, rest) = line.split_once("/containers/")?;
        let id: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        (id.len() == 64 && rest[64..].starts_with('/')).then_some(id)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_container_id_from_mountinfo() {
        let id = "a".repeat(64);
        let text = format!(
            "1 2 0:1 / / rw - overlay overlay rw\n3 1 8:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(super::container_id_from_mountinfo(&text), Some(id));
        assert_eq!(
            super::container_id_from_mountinfo("1 2 0:1 / / rw - overlay overlay rw\n"),
            None
        );
        assert_eq!(
            super::container_id_from_mountinfo("x /containers/abc/hostname y"),
            None
        );
    }

    use super::*;

    #[test]
    fn machine_id_is_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let a = machine_id(Some(&state), "").unwrap();
        let b = machine_id(Some(&state), "").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        std::fs::write(state.join(MACHINE_ID_FILE), "bad id\n").unwrap();
        assert!(machine_id(Some(&state), "").is_err());
    }

    #[test]
    fn machine_id_derives_from_the_docker_id() {
        let a = machine_id(None, "ABCD:EFGH").unwrap();
        assert_eq!(a, machine_id(None, "ABCD:EFGH").unwrap());
        assert_ne!(a, machine_id(None, "OTHER").unwrap());
        assert!(machine_id(None, " ").is_err());
    }

    #[test]
    fn versions_round_trip_and_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = Versions::load(Some(dir.path()));
        v.remember("sha256:a", "1.0.0");
        v.remember("sha256:b", "1.1.0");
        v.remember("sha256:a", "1.0.1");
        let v2 = Versions::load(Some(dir.path()));
        assert_eq!(v2.get("sha256:a"), Some("1.0.1"));
        assert_eq!(v2.get("sha256:b"), Some("1.1.0"));
        assert_eq!(v2.get("sha256:c"), None);
        let mut mem = Versions::load(None);
        for i in 0..(MAX_VERSIONS + 10) {
            mem.remember(&format!("id{i}"), "1.0.0");
        }
        assert_eq!(mem.entries.len(), MAX_VERSIONS);
        assert_eq!(mem.get("id0"), None);
    }
}
