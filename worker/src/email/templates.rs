//! The e-mail templates: built in (Finnish, Swedish, English), each file
//! overridable by a file of the same name in `INTAKE_TEMPLATES_DIR`, which
//! is how a partner edits the recruitment-process instructions. Rendered with
//! minijinja; `.html` templates escape every value (a `<script>` in a name
//! arrives as text).

use std::path::Path;

use common::senders::json::Json;
use minijinja::{Environment, context};

pub const LANGUAGES: [&str; 3] = ["fi", "sv", "en"];

const PARTS: [&str; 3] = ["subject.txt", "txt", "html"];

const BUILT_IN: [(&str, &str); 9] = [
    (
        "acknowledgement.fi.subject.txt",
        include_str!("../../templates/acknowledgement.fi.subject.txt"),
    ),
    (
        "acknowledgement.fi.txt",
        include_str!("../../templates/acknowledgement.fi.txt"),
    ),
    (
        "acknowledgement.fi.html",
        include_str!("../../templates/acknowledgement.fi.html"),
    ),
    (
        "acknowledgement.sv.subject.txt",
        include_str!("../../templates/acknowledgement.sv.subject.txt"),
    ),
    (
        "acknowledgement.sv.txt",
        include_str!("../../templates/acknowledgement.sv.txt"),
    ),
    (
        "acknowledgement.sv.html",
        include_str!("../../templates/acknowledgement.sv.html"),
    ),
    (
        "acknowledgement.en.subject.txt",
        include_str!("../../templates/acknowledgement.en.subject.txt"),
    ),
    (
        "acknowledgement.en.txt",
        include_str!("../../templates/acknowledgement.en.txt"),
    ),
    (
        "acknowledgement.en.html",
        include_str!("../../templates/acknowledgement.en.html"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {name}: {error}")]
    Read { name: String, error: std::io::Error },
    #[error("template {name} is invalid: {error}")]
    Invalid {
        name: String,
        error: minijinja::Error,
    },
}

/// One rendered e-mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub struct Templates {
    environment: Environment<'static>,
}

impl Templates {
    /// The built-in templates, each replaced by `dir/<name>` where that file
    /// exists. Every template is parsed now: a broken override stops the
    /// worker at start, not at the first applicant.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut environment = Environment::new();
        for (name, built_in) in BUILT_IN {
            let source = match dir.map(|dir| dir.join(name)).filter(|path| path.is_file()) {
                Some(path) => {
                    std::fs::read_to_string(&path).map_err(|error| TemplateError::Read {
                        name: name.to_owned(),
                        error,
                    })?
                }
                None => built_in.to_owned(),
            };
            environment
                .add_template_owned(name, source)
                .map_err(|error| TemplateError::Invalid {
                    name: name.to_owned(),
                    error,
                })?;
        }
        Ok(Templates { environment })
    }

    pub fn render_acknowledgement(
        &self,
        language: &str,
        first_name: Option<&str>,
        partner_name: &str,
    ) -> Result<Rendered, minijinja::Error> {
        let language = if LANGUAGES.contains(&language) {
            language
        } else {
            "fi"
        };
        let values = context! { first_name => first_name, partner_name => partner_name };
        let [subject, text, html] = PARTS.map(|part| {
            self.environment
                .get_template(&format!("acknowledgement.{language}.{part}"))
                .and_then(|template| template.render(&values))
        });
        Ok(Rendered {
            // A subject is one line.
            subject: subject?
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
                .trim()
                .to_owned(),
            text: text?,
            html: html?,
        })
    }
}

/// The applicant's language from their profile: `fi`, `sv` or `en`
/// (`fi-FI`, `SV` and the like included); anything else is Finnish.
pub fn language_of(profile: &Json<'_>, pointer: &str) -> &'static str {
    let given = profile
        .pointer(pointer)
        .and_then(Json::as_str)
        .map(|text| text.trim().to_ascii_lowercase())
        .unwrap_or_default();
    LANGUAGES
        .into_iter()
        .find(|language| given == *language || given.starts_with(&format!("{language}-")))
        .unwrap_or("fi")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_renders_with_and_without_a_first_name()
    -> Result<(), Box<dyn std::error::Error>> {
        let templates = Templates::load(None)?;
        for language in LANGUAGES {
            let named =
                templates.render_acknowledgement(language, Some("Aino"), "Henkilöstöpalvelu Oy")?;
            assert!(named.text.contains("Aino") && named.html.contains("Aino"));
            assert!(
                named.subject.contains("Henkilöstöpalvelu Oy") && !named.subject.contains('\n')
            );
            let neutral = templates.render_acknowledgement(language, None, "X")?;
            assert!(!neutral.text.contains("None"));
        }
        Ok(())
    }

    #[test]
    fn html_escapes_what_it_is_given() -> Result<(), Box<dyn std::error::Error>> {
        let rendered =
            Templates::load(None)?.render_acknowledgement("en", Some("<script>x</script>"), "P")?;
        assert!(rendered.html.contains("&lt;script&gt;"));
        assert!(!rendered.html.contains("<script>"));
        Ok(())
    }

    #[test]
    fn the_language_comes_from_the_profile_or_is_finnish() {
        let language = |profile: &str| {
            let profile = common::senders::json::parse(profile.as_bytes()).expect("JSON");
            language_of(&profile, "/language")
        };
        assert_eq!(language(r#"{"language": "sv"}"#), "sv");
        assert_eq!(language(r#"{"language": "EN-gb"}"#), "en");
        assert_eq!(language(r#"{"language": "de"}"#), "fi");
        assert_eq!(language("{}"), "fi");
    }
}
