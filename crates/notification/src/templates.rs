//! The built-in templates, compiled once at startup, and their rendering to plain text.
//!
//! Templates use minijinja syntax. Output is plain text: auto-escaping is off for every
//! template, so `<b>` or `&` in a value arrives as written, and a value is inserted as
//! text, never evaluated as template syntax. A consumer that puts a body into HTML must
//! escape it there.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

/// One built-in template: a subject line and a body.
struct Builtin {
    name: &'static str,
    subject: &'static str,
    body: &'static str,
}

const BUILTINS: [Builtin; 3] = [
    Builtin {
        name: "welcome_email",
        subject: "Welcome to CassandraNet",
        body: "Hello {{ Name }}, welcome to CassandraNet!",
    },
    Builtin {
        name: "password_reset",
        subject: "Your CassandraNet password reset code",
        body: "Hi {{ Name }}, use code {{ Code }} to reset your password.",
    },
    Builtin {
        name: "moderation_alert",
        subject: "Content {{ ContentID }} flagged for review",
        body: "Content {{ ContentID }} was flagged for review.",
    },
];

/// An error from rendering a template.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The data lacks variables the template uses, or has them only as empty strings.
    #[error("template {template} uses {}, which the data lacks", missing.join(", "))]
    MissingVariables {
        template: String,
        /// Sorted by name.
        missing: Vec<String>,
    },
    /// No template has this name.
    #[error("no template is named {0}")]
    UnknownTemplate(String),
    /// The engine failed on input that passed the variable check; a bug.
    #[error("rendering template {template} failed")]
    Engine {
        template: String,
        #[source]
        source: minijinja::Error,
    },
}

/// A rendered notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// The compiled templates and the variables each one uses.
pub struct Templates {
    environment: Environment<'static>,
    /// Template name to the variables its subject and body use, sorted.
    variables: BTreeMap<&'static str, Vec<String>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("variables", &self.variables)
            .finish_non_exhaustive()
    }
}

impl Templates {
    /// Compiles the built-in templates. Only invalid template syntax fails it, and the unit
    /// tests compile every built-in.
    pub fn builtin() -> Result<Self, minijinja::Error> {
        let mut environment = Environment::new();
        environment.set_auto_escape_callback(|_| AutoEscape::None);
        // A variable that slips past the check in `render` fails instead of printing "".
        environment.set_undefined_behavior(UndefinedBehavior::Strict);

        for builtin in &BUILTINS {
            environment.add_template_owned(subject_key(builtin.name), builtin.subject)?;
            environment.add_template(builtin.name, builtin.body)?;
        }

        let mut variables = BTreeMap::new();
        for builtin in &BUILTINS {
            let mut used = BTreeSet::new();
            for key in [subject_key(builtin.name).as_str(), builtin.name] {
                used.extend(environment.get_template(key)?.undeclared_variables(false));
            }
            variables.insert(builtin.name, used.into_iter().collect());
        }
        Ok(Templates {
            environment,
            variables,
        })
    }

    /// Returns the template names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.variables.keys().copied()
    }

    /// Returns the variables a template uses, sorted, or `None` for an unknown template.
    pub fn variables(&self, name: &str) -> Option<&[String]> {
        self.variables.get(name).map(Vec::as_slice)
    }

    /// Renders a template's subject and body with `data` as the variables. A variable
    /// that is absent or an empty string is missing.
    pub fn render(
        &self,
        name: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<Rendered, RenderError> {
        let Some(variables) = self.variables.get(name) else {
            return Err(RenderError::UnknownTemplate(name.to_string()));
        };
        let missing: Vec<String> = variables
            .iter()
            .filter(|variable| data.get(*variable).is_none_or(String::is_empty))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(RenderError::MissingVariables {
                template: name.to_string(),
                missing,
            });
        }

        let context = Value::from_pairs(
            data.iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        );
        let render = |key: &str| -> Result<String, RenderError> {
            self.environment
                .get_template(key)
                .and_then(|template| template.render(context.clone()))
                .map_err(|source| RenderError::Engine {
                    template: name.to_string(),
                    source,
                })
        };
        Ok(Rendered {
            subject: render(&subject_key(name))?,
            body: render(name)?,
        })
    }
}

/// Builds the environment key of a template's subject line. Built-in template names
/// contain no dot, so the key cannot collide with a body.
fn subject_key(name: &str) -> String {
    format!("{name}.subject")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn templates() -> Templates {
        Templates::builtin().expect("built-in templates compile")
    }

    #[test]
    fn lists_builtins_and_their_variables() {
        let templates = templates();
        assert_eq!(
            templates.names().collect::<Vec<_>>(),
            ["moderation_alert", "password_reset", "welcome_email"]
        );
        assert_eq!(
            templates.variables("welcome_email"),
            Some(&["Name".to_string()][..])
        );
        assert_eq!(
            templates.variables("password_reset"),
            Some(&["Code".to_string(), "Name".to_string()][..])
        );
        assert_eq!(
            templates.variables("moderation_alert"),
            Some(&["ContentID".to_string()][..])
        );
        assert_eq!(templates.variables("welcome_email.subject"), None);
    }

    #[test]
    fn renders_subject_and_body() {
        let rendered = templates()
            .render(
                "password_reset",
                &data(&[("Name", "Ada"), ("Code", "123456")]),
            )
            .expect("renders");
        assert_eq!(rendered.subject, "Your CassandraNet password reset code");
        assert_eq!(
            rendered.body,
            "Hi Ada, use code 123456 to reset your password."
        );

        let rendered = templates()
            .render("moderation_alert", &data(&[("ContentID", "c-9")]))
            .expect("renders");
        assert_eq!(rendered.subject, "Content c-9 flagged for review");
        assert_eq!(rendered.body, "Content c-9 was flagged for review.");
    }

    #[test]
    fn missing_and_empty_variables_are_reported() {
        let error = templates()
            .render("password_reset", &data(&[("Name", "")]))
            .unwrap_err();
        match error {
            RenderError::MissingVariables { template, missing } => {
                assert_eq!(template, "password_reset");
                assert_eq!(missing, ["Code", "Name"]);
            }
            other => panic!("expected missing variables, got {other:?}"),
        }
    }

    #[test]
    fn values_are_plain_text() {
        let rendered = templates()
            .render(
                "welcome_email",
                &data(&[("Name", "<b>Ada</b> & {{ Secret }} {% if x %}")]),
            )
            .expect("renders");
        assert_eq!(
            rendered.body,
            "Hello <b>Ada</b> & {{ Secret }} {% if x %}, welcome to CassandraNet!"
        );
    }

    #[test]
    fn unknown_template_is_reported() {
        let error = templates().render("nope", &BTreeMap::new()).unwrap_err();
        assert!(
            matches!(error, RenderError::UnknownTemplate(_)),
            "{error:?}"
        );
    }
}
