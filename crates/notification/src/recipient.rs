//! Recipient checks per channel, and the part of a recipient that is safe to log.

use url::Url;

use crate::model::Channel;

/// Maximum length of an email address in bytes: the SMTP path limit of RFC 5321 less its
/// angle brackets.
pub const MAX_EMAIL_LEN: usize = 254;
/// Maximum length of the part of an email address before the `@`, in bytes (RFC 5321).
const MAX_LOCAL_PART_LEN: usize = 64;
/// Maximum length of a DNS label, in characters.
const MAX_LABEL_LEN: usize = 63;
/// Maximum length of a webhook URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Maximum length of an in-app recipient id, in characters.
pub const MAX_IN_APP_ID_LEN: usize = 256;

/// Characters that cannot appear unquoted before the `@` of an address; quoted local
/// parts are rejected as implausible.
const EMAIL_SPECIALS: &str = "()<>[]\\,;:\"@";

/// Checks that `recipient` can be reached on `channel`; the error is the client message.
pub fn check(channel: Channel, recipient: &str) -> Result<(), String> {
    match channel {
        Channel::Email => check_email(recipient),
        Channel::Webhook => check_webhook(recipient),
        Channel::InApp => check_in_app_id(recipient),
    }
}

/// Returns the part of a recipient that logs may show. A full address identifies a
/// person, so only its domain is kept. Webhook paths often embed access tokens, so a URL
/// keeps only its origin. An in-app id is an opaque account id and is kept whole.
pub fn loggable(channel: Channel, recipient: &str) -> String {
    match channel {
        Channel::Email => match recipient.rsplit_once('@') {
            Some((_, domain)) => format!("*@{domain}"),
            None => "*".to_string(),
        },
        Channel::Webhook => match Url::parse(recipient) {
            Ok(url) => url.origin().ascii_serialization(),
            Err(_) => "*".to_string(),
        },
        Channel::InApp => recipient.to_string(),
    }
}

fn check_email(address: &str) -> Result<(), String> {
    const EXPECTED: &str =
        "recipient must be an email address such as ada@example.com for the email channel";
    if address.len() > MAX_EMAIL_LEN {
        return Err(format!(
            "recipient is longer than {MAX_EMAIL_LEN} bytes, the limit for an email address"
        ));
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(EXPECTED.to_string());
    };
    if local.len() > MAX_LOCAL_PART_LEN {
        return Err(format!(
            "recipient has more than {MAX_LOCAL_PART_LEN} bytes before the @"
        ));
    }
    if !is_plausible_local_part(local) || !is_plausible_domain(domain) {
        return Err(EXPECTED.to_string());
    }
    Ok(())
}

fn is_plausible_local_part(local: &str) -> bool {
    !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !EMAIL_SPECIALS.contains(c))
}

/// Checks for a host name of at least two labels. Letters may be non-ASCII, as in
/// internationalised domain names.
fn is_plausible_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            let length = label.chars().count();
            (1..=MAX_LABEL_LEN).contains(&length)
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

fn check_webhook(text: &str) -> Result<(), String> {
    const EXPECTED: &str = "recipient must be an absolute http or https URL such as https://hooks.example.com/notify for the webhook channel";
    if text.len() > MAX_URL_LEN {
        return Err(format!("recipient is longer than {MAX_URL_LEN} bytes"));
    }
    // The URL parser silently strips surrounding spaces and drops tabs and newlines
    // inside, so text with any of them would be stored differently from what it sends.
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EXPECTED.to_string());
    }
    let url = Url::parse(text).map_err(|_| EXPECTED.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(EXPECTED.to_string());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(EXPECTED.to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "recipient must not contain a user name or password, because the delivery history shows it"
                .to_string(),
        );
    }
    Ok(())
}

fn check_in_app_id(id: &str) -> Result<(), String> {
    if id.chars().count() > MAX_IN_APP_ID_LEN {
        return Err(format!(
            "recipient is longer than {MAX_IN_APP_ID_LEN} characters, the limit for an in-app id"
        ));
    }
    if id.trim() != id {
        return Err("recipient must not start or end with whitespace".to_string());
    }
    if id.chars().any(char::is_control) {
        return Err("recipient contains control characters".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_emails_pass() {
        for address in [
            "ada@example.com",
            "first.last+tag@mail.example.co.uk",
            "o'neil@example.org",
            "user@xn--bcher-kva.example",
            "jörg@bücher.example",
        ] {
            assert_eq!(check(Channel::Email, address), Ok(()), "{address}");
        }
    }

    #[test]
    fn implausible_emails_fail() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_address = format!("a@{}.com", "b".repeat(250));
        for address in [
            "ada",
            "@example.com",
            "ada@",
            "ada@localhost",
            "ada@@example.com",
            "a@b@example.com",
            "ada lovelace@example.com",
            ".ada@example.com",
            "ada.@example.com",
            "a..da@example.com",
            "ada@example..com",
            "ada@-example.com",
            "ada@exa_mple.com",
            "\"ada\"@example.com",
            "ada@example.com\n",
            long_local.as_str(),
            long_address.as_str(),
        ] {
            assert!(check(Channel::Email, address).is_err(), "{address:?}");
        }
    }

    #[test]
    fn http_urls_pass() {
        for url in [
            "https://hooks.example.com/notify",
            "http://127.0.0.1:9000/hook?team=a",
            "https://[::1]:8443/",
        ] {
            assert_eq!(check(Channel::Webhook, url), Ok(()), "{url}");
        }
    }

    #[test]
    fn other_urls_fail() {
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        for url in [
            "hooks.example.com/notify",
            "/notify",
            "ftp://example.com/file",
            "mailto:ada@example.com",
            "https://",
            " https://example.com/hook",
            "https://example.com/ho\tok",
            "https://user:secret@example.com/hook",
            "https://token@example.com/hook",
            long.as_str(),
        ] {
            assert!(check(Channel::Webhook, url).is_err(), "{url:?}");
        }
    }

    #[test]
    fn in_app_ids_are_bounded() {
        assert_eq!(check(Channel::InApp, "user-42"), Ok(()));
        assert_eq!(check(Channel::InApp, "Ada Lovelace"), Ok(()));
        assert!(check(Channel::InApp, " user-42").is_err());
        assert!(check(Channel::InApp, "user\u{0}42").is_err());
        assert!(check(Channel::InApp, &"u".repeat(MAX_IN_APP_ID_LEN + 1)).is_err());
        assert_eq!(
            check(Channel::InApp, &"u".repeat(MAX_IN_APP_ID_LEN)),
            Ok(())
        );
    }

    #[test]
    fn loggable_hides_people_and_tokens() {
        assert_eq!(loggable(Channel::Email, "ada@example.com"), "*@example.com");
        assert_eq!(
            loggable(
                Channel::Webhook,
                "https://hooks.example.com:8443/services/T0/B0/secret?key=x"
            ),
            "https://hooks.example.com:8443"
        );
        assert_eq!(loggable(Channel::InApp, "user-42"), "user-42");
    }
}
