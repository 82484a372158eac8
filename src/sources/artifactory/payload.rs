//! Unpacks and validates a deploy payload (`<domain>-<env>-<app>-<version>.tar.gz`) in memory,
//! enforcing the payload rules: every file inside one directory named like the tarball; exactly
//! one metadata `.json` (`name`, `version`, `imageVersion`, `numInstances` — `numInstance`, as the
//! original README spells it, is accepted too); exactly one `.service` or `.service.tmpl`; at
//! most one `.etcd2`; an optional `README.md`; nothing else. Links, absolute paths, `..`, files
//! over 1 MiB, archives over 10 MiB unpacked and non-gzip input are refused with a reason.
//! Nothing touches the disk (artifactory-monitor shelled out to `tar -xzf` into /tmp).

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

use super::template::{render, TemplateVars};

/// Largest file inside a payload.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Largest unpacked archive (the tar stream, headers included).
pub const MAX_UNPACKED_BYTES: u64 = 10 * 1024 * 1024;

/// A validated payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub metadata: serde_json::Value,
    pub metadata_file: String,
    pub metadata_raw: Vec<u8>,
    pub vars: TemplateVars,
    /// The unit file name, `.tmpl` removed (`example-video-mobile@.service`).
    pub unit_name: String,
    /// The rendered unit file.
    pub unit: String,
    pub etcd2_file: Option<String>,
    pub etcd2_raw: Option<Vec<u8>>,
    /// `.etcd2` lines as (key, value); value may contain spaces.
    pub etcd2_keys: Vec<(String, String)>,
    pub readme: Option<Vec<u8>>,
}

/// Counts decompressed bytes and fails once the archive grows past the limit.
struct Limited<R> {
    inner: R,
    remaining: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.remaining {
            self.exceeded.set(true);
            return Err(std::io::Error::other("archive too large"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[derive(Default)]
struct Found {
    metadata: Option<(String, Vec<u8>)>,
    unit: Option<(String, Vec<u8>)>,
    etcd2: Option<(String, Vec<u8>)>,
    readme: Option<Vec<u8>>,
}

fn put(
    slot: &mut Option<(String, Vec<u8>)>,
    kind: &str,
    name: &str,
    content: Vec<u8>,
) -> Result<(), String> {
    if let Some((first, _)) = slot {
        return Err(format!("more than one {kind} file ({first} and {name})"));
    }
    *slot = Some((name.to_string(), content));
    Ok(())
}

/// Unpacks `archive` (gzip'ed tar), expecting its files in `expected_dir/` and metadata for
/// `deploy_version`.
pub fn unpack(archive: &[u8], expected_dir: &str, deploy_version: &str) -> Result<Payload, String> {
    if archive.len() < 2 || archive[0] != 0x1f || archive[1] != 0x8b {
        return Err("not a gzip file".into());
    }
    let exceeded = Rc::new(Cell::new(false));
    let reader = Limited {
        inner: flate2::read::GzDecoder::new(archive),
        remaining: MAX_UNPACKED_BYTES,
        exceeded: exceeded.clone(),
    };
    let too_large = || format!("archive larger than {MAX_UNPACKED_BYTES} bytes unpacked");
    let mut tar = tar::Archive::new(reader);
    let entries = tar
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    let mut found = Found::default();
    let mut names = std::collections::HashSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            if exceeded.get() {
                too_large()
            } else {
                format!("corrupt archive: {e}")
            }
        })?;
        let kind = entry.header().entry_type();
        let raw_path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| "an entry name is not UTF-8".to_string())?;
        if kind.is_symlink() {
            return Err(format!("symlink {raw_path:?} not allowed"));
        }
        if kind.is_hard_link() {
            return Err(format!("hard link {raw_path:?} not allowed"));
        }
        if kind.is_pax_global_extensions() {
            continue;
        }
        let is_dir = kind.is_dir();
        if !is_dir && !kind.is_file() && kind != tar::EntryType::Continuous {
            return Err(format!("entry {raw_path:?} has an unsupported type"));
        }
        if raw_path.starts_with('/') {
            return Err(format!("absolute path {raw_path:?} not allowed"));
        }
        let parts: Vec<&str> = raw_path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if parts.contains(&"..") {
            return Err(format!("path traversal in {raw_path:?}"));
        }
        if parts.first() != Some(&expected_dir) {
            return Err(format!(
                "entry {raw_path:?} is outside the directory {expected_dir}/"
            ));
        }
        match (is_dir, parts.len()) {
            (true, 1) => continue,
            (true, _) => return Err(format!("unexpected subdirectory {raw_path:?}")),
            (false, 2) => {}
            (false, _) => return Err(format!("unexpected file {raw_path:?}")),
        }
        let name = parts[1].to_string();
        // Stored in package_files.name (VARCHAR(255)) and shown in pages.
        if name.chars().count() > 255 || name.chars().any(char::is_control) {
            return Err(format!(
                "file name {:?} is longer than 255 characters or not printable",
                name.chars().take(60).collect::<String>()
            ));
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| format!("{raw_path:?}: {e}"))?;
        if size > MAX_FILE_BYTES {
            return Err(format!(
                "file {name} is {size} bytes, more than {MAX_FILE_BYTES} allowed"
            ));
        }
        let mut content = Vec::with_capacity(size as usize);
        (&mut entry)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut content)
            .map_err(|e| {
                if exceeded.get() {
                    too_large()
                } else {
                    format!("reading {name}: {e}")
                }
            })?;
        if content.len() as u64 > MAX_FILE_BYTES {
            return Err(format!("file {name} is more than {MAX_FILE_BYTES} bytes"));
        }
        if !names.insert(name.clone()) {
            return Err(format!("duplicate file {name}"));
        }
        if name == "README.md" {
            found.readme = Some(content);
        } else if name.ends_with(".service") || name.ends_with(".service.tmpl") {
            put(
                &mut found.unit,
                "unit (.service/.service.tmpl)",
                &name,
                content,
            )?;
        } else if name.ends_with(".etcd2") {
            put(&mut found.etcd2, ".etcd2", &name, content)?;
        } else if name.ends_with(".json") {
            put(&mut found.metadata, "metadata (.json)", &name, content)?;
        } else {
            return Err(format!(
                "unexpected file {name} (allowed: one .json, one .service or .service.tmpl, one .etcd2, README.md)"
            ));
        }
    }
    if exceeded.get() {
        return Err(too_large());
    }
    let (metadata_file, metadata_raw) = found
        .metadata
        .ok_or_else(|| format!("no metadata .json file in {expected_dir}/"))?;
    let (unit_file, unit_raw) = found
        .unit
        .ok_or_else(|| format!("no .service or .service.tmpl file in {expected_dir}/"))?;
    let (metadata, vars) = parse_metadata(&metadata_file, &metadata_raw, deploy_version)?;
    let unit_text = String::from_utf8(unit_raw).map_err(|_| format!("{unit_file} is not UTF-8"))?;
    let unit = render(&unit_text, &vars).map_err(|e| format!("{unit_file}: {e}"))?;
    let unit_name = unit_file
        .strip_suffix(".tmpl")
        .unwrap_or(&unit_file)
        .to_string();
    let (etcd2_file, etcd2_raw, etcd2_keys) = match found.etcd2 {
        Some((name, raw)) => {
            let text = std::str::from_utf8(&raw).map_err(|_| format!("{name} is not UTF-8"))?;
            let keys = parse_etcd2(text);
            (Some(name), Some(raw), keys)
        }
        None => (None, None, Vec::new()),
    };
    Ok(Payload {
        metadata,
        metadata_file,
        metadata_raw,
        vars,
        unit_name,
        unit,
        etcd2_file,
        etcd2_raw,
        etcd2_keys,
        readme: found.readme,
    })
}

fn required_text(
    obj: &serde_json::Map<String, serde_json::Value>,
    file: &str,
    field: &str,
) -> Result<String, String> {
    match obj.get(field) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
            if s.len() > 255 || s.chars().any(char::is_control) {
                Err(format!(
                    "{file}: {field} must be at most 255 printable characters"
                ))
            } else {
                Ok(s.trim().to_string())
            }
        }
        Some(serde_json::Value::String(_)) | None => {
            Err(format!("{file}: {field} is missing or empty"))
        }
        Some(_) => Err(format!("{file}: {field} must be a string")),
    }
}

/// Validates the metadata (artifactory-monitor accepted zero values; we do not).
fn parse_metadata(
    file: &str,
    raw: &[u8],
    deploy_version: &str,
) -> Result<(serde_json::Value, TemplateVars), String> {
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| format!("{file}: bad JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| format!("{file}: metadata must be a JSON object"))?;
    let name = required_text(obj, file, "name")?;
    let version = required_text(obj, file, "version")?;
    let image_version = required_text(obj, file, "imageVersion")?;
    let instances = |field: &str| -> Result<Option<u32>, String> {
        match obj.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=10_000).contains(n))
                .map(|n| Some(n as u32))
                .ok_or_else(|| format!("{file}: {field} must be an integer from 1 to 10000")),
        }
    };
    let num_instances = match (instances("numInstances")?, instances("numInstance")?) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "{file}: numInstances ({a}) and numInstance ({b}) disagree"
            ))
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => return Err(format!("{file}: numInstances is missing")),
    };
    if version != deploy_version {
        return Err(format!(
            "{file}: version {version:?} does not match the deploy request version {deploy_version:?}"
        ));
    }
    Ok((
        value.clone(),
        TemplateVars {
            name,
            version,
            image_version,
            num_instances,
        },
    ))
}

/// `.etcd2` lines are `<key> <value with spaces>`; lines with fewer than two fields (and
/// comments) are skipped, as coreos-deploy-client did.
pub fn parse_etcd2(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once(char::is_whitespace)?;
            let value = value.trim();
            (!key.is_empty() && !value.is_empty()).then(|| (key.to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd2_lines() {
        let keys = parse_etcd2("/k/x value with spaces\n\n/lonely\n# comment\n/a\t1\n");
        assert_eq!(
            keys,
            vec![
                ("/k/x".to_string(), "value with spaces".to_string()),
                ("/a".to_string(), "1".to_string())
            ]
        );
    }

    #[test]
    fn metadata_rules() {
        let ok = br#"{"name":"n","version":"1.0.0","imageVersion":"1.0.0","numInstance":2}"#;
        let (_, vars) = parse_metadata("m.json", ok, "1.0.0").unwrap();
        assert_eq!(vars.num_instances, 2);
        assert!(parse_metadata("m.json", ok, "1.0.1")
            .unwrap_err()
            .contains("does not match"));
        let zero = br#"{"name":"n","version":"1.0.0","imageVersion":"1.0.0","numInstances":0}"#;
        assert!(parse_metadata("m.json", zero, "1.0.0").is_err());
        let missing = br#"{"name":"n","version":"1.0.0","numInstances":1}"#;
        assert!(parse_metadata("m.json", missing, "1.0.0")
            .unwrap_err()
            .contains("imageVersion"));
        assert!(parse_metadata("m.json", b"[1]", "1.0.0").is_err());
        assert!(parse_metadata("m.json", b"{", "1.0.0")
            .unwrap_err()
            .contains("bad JSON"));
    }

    #[test]
    fn not_gzip() {
        assert_eq!(
            unpack(b"PK\x03\x04", "d", "1").unwrap_err(),
            "not a gzip file"
        );
    }
}
