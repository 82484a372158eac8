//! The unit-file template language of the coreos-deploy ecosystem, reduced to what payloads use:
//! Go `text/template` field actions `{{.Name}}`, `{{.Version}}`, `{{.ImageVersion}}` and
//! `{{.NumInstances}}` (with optional spaces and `-` trim markers). Anything else inside `{{ }}`
//! is an error naming the action, so a template is never half-rendered.

/// The values a payload's metadata provides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateVars {
    pub name: String,
    pub version: String,
    pub image_version: String,
    pub num_instances: u32,
}

/// Renders `template` with `vars`.
pub fn render(template: &str, vars: &TemplateVars) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        let after_open = &rest[start + 2..];
        let end = after_open
            .find("}}")
            .ok_or_else(|| "unclosed action: \"{{\" without \"}}\"".to_string())?;
        let mut inner = &after_open[..end];
        let mut after = &after_open[end + 2..];
        // Go's trim markers: "{{- " trims whitespace before, " -}}" after.
        if let Some(stripped) = inner.strip_prefix("- ") {
            before = before.trim_end();
            inner = stripped;
        }
        if let Some(stripped) = inner.strip_suffix(" -") {
            after = after.trim_start();
            inner = stripped;
        }
        out.push_str(before);
        let value = match inner.trim() {
            ".Name" => vars.name.clone(),
            ".Version" => vars.version.clone(),
            ".ImageVersion" => vars.image_version.clone(),
            ".NumInstances" => vars.num_instances.to_string(),
            other => {
                return Err(format!(
                    "unsupported template action {{{{{other}}}}} (only .Name, .Version, .ImageVersion, .NumInstances)"
                ))
            }
        };
        out.push_str(&value);
        rest = after;
    }
    // A stray "}}" is literal text in Go templates too; keep it.
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> TemplateVars {
        TemplateVars {
            name: "example-video-mobile".into(),
            version: "1.0.1-22".into(),
            image_version: "1.0.1-22".into(),
            num_instances: 2,
        }
    }

    #[test]
    fn renders_every_field() {
        let t = "[Service]\nExecStart=/usr/bin/docker run --name {{.Name}}-%i acme/{{ .Name }}:{{.ImageVersion}}\n# {{.Version}} x{{.NumInstances}}\n";
        assert_eq!(
            render(t, &vars()).unwrap(),
            "[Service]\nExecStart=/usr/bin/docker run --name example-video-mobile-%i acme/example-video-mobile:1.0.1-22\n# 1.0.1-22 x2\n"
        );
    }

    #[test]
    fn trim_markers_and_plain_text() {
        assert_eq!(
            render("a  {{- .Name -}}  b", &vars()).unwrap(),
            "aexample-video-mobileb"
        );
        assert_eq!(
            render("no actions %i }}", &vars()).unwrap(),
            "no actions %i }}"
        );
    }

    #[test]
    fn unknown_actions_and_unclosed_braces_are_errors() {
        assert!(render("{{.Secret}}", &vars())
            .unwrap_err()
            .contains(".Secret"));
        assert!(render("{{range .X}}{{end}}", &vars()).is_err());
        assert!(render("x {{.Name", &vars())
            .unwrap_err()
            .contains("unclosed"));
    }
}
