//! Which containers the agent may touch, and image references. Pure functions, unit-tested:
//! a mistake here would recreate containers nobody asked us to touch.

use std::collections::HashMap;

/// Label naming the application (id or name) a container belongs to.
pub const LABEL_APP: &str = "rollbridge.app";
/// Label naming the Omaha track (group) of the container.
pub const LABEL_GROUP: &str = "rollbridge.group";
/// `rollbridge.enable=false` excludes a container whatever else matches.
pub const LABEL_ENABLE: &str = "rollbridge.enable";
/// Optional: the version the container runs, when its tag is not a version.
pub const LABEL_VERSION: &str = "rollbridge.version";

/// A parsed image reference: `[registry/]path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Repository as written (with registry host when given), without tag or digest.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference; None for empty or malformed input (the same rules as the sources use).
    pub fn parse(reference: &str) -> Option<Self> {
        let (repository, tag, digest) =
            crate::domain::release::parse_image_reference(reference).ok()?;
        Some(Self {
            repository,
            tag,
            digest,
        })
    }

    /// The repository in canonical form, for comparisons (`nginx` = `docker.io/library/nginx`).
    pub fn normalized_repository(&self) -> String {
        normalize_repository(&self.repository)
    }

    /// `repo:tag` (tag `latest` when none), the name a container is created from.
    pub fn tagged(&self) -> String {
        format!(
            "{}:{}",
            self.repository,
            self.tag.as_deref().unwrap_or("latest")
        )
    }

    /// `repo@digest` when a digest is known, else `repo:tag`: what to pull.
    pub fn pull_reference(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.repository),
            None => self.tagged(),
        }
    }

    /// The registry host, or None for Docker Hub.
    pub fn registry(&self) -> Option<&str> {
        registry_of(&self.repository)
    }
}

/// The first path component when it names a registry (has a '.', a ':' or is `localhost`).
fn registry_of(repository: &str) -> Option<&str> {
    let (first, _) = repository.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// `docker.io/x` and `index.docker.io/x` are `x`; one-segment Hub names are `library/<name>`.
pub fn normalize_repository(repository: &str) -> String {
    let r = repository.trim().to_ascii_lowercase();
    let r = r
        .strip_prefix("docker.io/")
        .or_else(|| r.strip_prefix("index.docker.io/"))
        .or_else(|| r.strip_prefix("registry-1.docker.io/"))
        .map(str::to_string)
        .unwrap_or(r);
    if registry_of(&r).is_none() && !r.contains('/') {
        format!("library/{r}")
    } else {
        r
    }
}

/// True when `repository` is under `owner`: `acme` matches `acme/web` and
/// `registry:5000/acme/web`; an owner with a '/' (`registry:5000/acme`) is a path prefix.
pub fn owner_matches(owner: &str, repository: &str) -> bool {
    let owner = owner.trim().trim_end_matches('/').to_ascii_lowercase();
    if owner.is_empty() {
        return false;
    }
    let repo = normalize_repository(repository);
    if owner.contains('/') {
        let owner = normalize_owner_prefix(&owner);
        return repo
            .strip_prefix(&owner)
            .is_some_and(|rest| rest.starts_with('/'));
    }
    let path = match registry_of(&repo) {
        Some(host) => &repo[host.len() + 1..],
        None => repo.as_str(),
    };
    path.split_once('/').is_some_and(|(ns, _)| ns == owner)
}

fn normalize_owner_prefix(owner: &str) -> String {
    owner
        .strip_prefix("docker.io/")
        .or_else(|| owner.strip_prefix("index.docker.io/"))
        .unwrap_or(owner)
        .to_string()
}

/// How a container is bound to an application.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AppSelector {
    /// `rollbridge.app=<id or name>`.
    Label(String),
    /// Matched by `--owner`: the application is the one publishing this repository.
    Repository(String),
}

/// Why a container is managed, with its optional group label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub app: AppSelector,
    pub group: Option<String>,
}

fn label_is_false(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "false" | "0" | "no" | "off"
    )
}

/// Decides whether the agent manages a container with these labels and image. None means the
/// container is never touched.
pub fn binding(
    labels: &HashMap<String, String>,
    image: &str,
    owners: &[String],
) -> Option<Binding> {
    if labels.get(LABEL_ENABLE).is_some_and(|v| label_is_false(v)) {
        return None;
    }
    let group = labels
        .get(LABEL_GROUP)
        .map(|g| g.trim().to_string())
        .filter(|g| !g.is_empty());
    if let Some(app) = labels.get(LABEL_APP).map(|a| a.trim()) {
        if !app.is_empty() {
            return Some(Binding {
                app: AppSelector::Label(app.to_string()),
                group,
            });
        }
    }
    let image = ImageRef::parse(image)?;
    if owners.iter().any(|o| owner_matches(o, &image.repository)) {
        return Some(Binding {
            app: AppSelector::Repository(image.normalized_repository()),
            group,
        });
    }
    None
}

/// The version a container runs: its `rollbridge.version` label, else its tag when that is a
/// version (a leading `v` is accepted).
pub fn version_from(labels: &HashMap<String, String>, image: &str) -> Option<String> {
    if let Some(v) = labels.get(LABEL_VERSION) {
        if crate::domain::Version::parse(v.trim()).is_ok() {
            return Some(v.trim().to_string());
        }
    }
    let tag = ImageRef::parse(image)?.tag?;
    let tag = tag.strip_prefix('v').unwrap_or(&tag);
    crate::domain::Version::parse(tag)
        .is_ok()
        .then(|| tag.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_parse() {
        let r = ImageRef::parse("127.0.0.1:5000/demo/web:1.1.0").unwrap();
        assert_eq!(r.repository, "127.0.0.1:5000/demo/web");
        assert_eq!(r.tag.as_deref(), Some("1.1.0"));
        assert_eq!(r.registry(), Some("127.0.0.1:5000"));
        let r = ImageRef::parse("127.0.0.1:5000/demo/web").unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.tagged(), "127.0.0.1:5000/demo/web:latest");
        let r = ImageRef::parse(&format!("demo/web:1.1.0@{DIGEST}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(DIGEST));
        assert_eq!(r.pull_reference(), format!("demo/web@{DIGEST}"));
        assert_eq!(r.tagged(), "demo/web:1.1.0");
        assert_eq!(r.registry(), None);
        for bad in [
            "",
            "a b",
            "web:",
            "web@sha256:xyz",
            "web@md5:00",
            "web:1.0;rm",
            "we$b:1",
        ] {
            assert_eq!(ImageRef::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn repositories_normalize() {
        assert_eq!(normalize_repository("nginx"), "library/nginx");
        assert_eq!(
            normalize_repository("docker.io/library/nginx"),
            "library/nginx"
        );
        assert_eq!(normalize_repository("index.docker.io/acme/web"), "acme/web");
        assert_eq!(
            normalize_repository("127.0.0.1:5000/Demo/web"),
            "127.0.0.1:5000/demo/web"
        );
    }

    #[test]
    fn owners_match_whole_namespaces() {
        assert!(owner_matches("notarock", "notarock/web"));
        assert!(owner_matches("notarock", "docker.io/notarock/web"));
        assert!(owner_matches("demo", "127.0.0.1:5000/demo/web"));
        assert!(!owner_matches("demo", "127.0.0.1:5000/demonic/web"));
        assert!(!owner_matches("notarock", "other/notarock"));
        assert!(!owner_matches("library", "127.0.0.1:5000/web"));
        assert!(owner_matches("library", "nginx"));
        assert!(owner_matches(
            "127.0.0.1:5000/demo",
            "127.0.0.1:5000/demo/web"
        ));
        assert!(!owner_matches(
            "127.0.0.1:5000/demo",
            "127.0.0.1:5000/demoweb"
        ));
        assert!(!owner_matches("", "demo/web"));
    }

    #[test]
    fn bindings() {
        let owners = vec!["demo".to_string()];
        assert_eq!(binding(&labels(&[]), "busybox:1", &owners), None);
        assert_eq!(
            binding(
                &labels(&[(LABEL_APP, "web"), (LABEL_GROUP, "beta")]),
                "busybox:1",
                &[]
            ),
            Some(Binding {
                app: AppSelector::Label("web".into()),
                group: Some("beta".into())
            })
        );
        assert_eq!(
            binding(&labels(&[]), "127.0.0.1:5000/demo/web:1.0.0", &owners),
            Some(Binding {
                app: AppSelector::Repository("127.0.0.1:5000/demo/web".into()),
                group: None
            })
        );
        for off in ["false", "FALSE", "0", "no"] {
            assert_eq!(
                binding(
                    &labels(&[(LABEL_APP, "web"), (LABEL_ENABLE, off)]),
                    "127.0.0.1:5000/demo/web:1.0.0",
                    &owners
                ),
                None,
                "{off}"
            );
        }
        assert_eq!(binding(&labels(&[(LABEL_APP, "  ")]), "x:1", &[]), None);
        assert!(binding(
            &labels(&[(LABEL_APP, "web"), (LABEL_ENABLE, "true")]),
            "x:1",
            &[]
        )
        .is_some());
    }

    #[test]
    fn versions_come_from_label_or_tag() {
        assert_eq!(
            version_from(&labels(&[]), "demo/web:1.2.3").as_deref(),
            Some("1.2.3")
        );
        assert_eq!(
            version_from(&labels(&[]), "demo/web:v2.0.0").as_deref(),
            Some("2.0.0")
        );
        assert_eq!(version_from(&labels(&[]), "demo/web:latest"), None);
        assert_eq!(
            version_from(&labels(&[(LABEL_VERSION, "3.0.0")]), "demo/web:latest").as_deref(),
            Some("3.0.0")
        );
    }
}
