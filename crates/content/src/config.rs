//! Settings read from `UGC_SERVICE_*` variables and the `[ugc_service]` table.

use platform::config::ConfigError;
use serde::Deserialize;

/// UGC Service settings beyond the common ones.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Maximum number of content items the memory store keeps. Past it, creation returns
    /// 429. Postgres mode has no such cap.
    pub max_items: usize,
    /// Maximum number of reviews the memory store keeps per item. Past it, the oldest
    /// review is dropped. Postgres keeps every review.
    pub max_reviews_per_item: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_items: 100_000,
            // An estimate: items are usually reviewed a few times, so 100 keeps typical
            // histories whole and still bounds an item that is flipped back and forth.
            max_reviews_per_item: 100,
        }
    }
}

impl Settings {
    /// Rejects zero capacities, which would make the memory store refuse every item or
    /// keep no review.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let capacities = [
            ("UGC_SERVICE_MAX_ITEMS", self.max_items),
            (
                "UGC_SERVICE_MAX_REVIEWS_PER_ITEM",
                self.max_reviews_per_item,
            ),
        ];
        for (variable, value) in capacities {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    origin: variable.to_string(),
                    detail: "expected at least 1, found 0".to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use platform::config::Loader;

    use super::*;

    #[test]
    fn reads_capacities_from_values() {
        let loader = Loader::from_values(
            crate::SERVICE.config,
            &[("max_items", "5"), ("max_reviews_per_item", "7")],
        );
        let settings: Settings = loader.extract().expect("valid settings");
        assert_eq!(settings.max_items, 5);
        assert_eq!(settings.max_reviews_per_item, 7);
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn zero_capacities_are_rejected() {
        for (name, settings) in [
            (
                "UGC_SERVICE_MAX_ITEMS",
                Settings {
                    max_items: 0,
                    ..Settings::default()
                },
            ),
            (
                "UGC_SERVICE_MAX_REVIEWS_PER_ITEM",
                Settings {
                    max_reviews_per_item: 0,
                    ..Settings::default()
                },
            ),
        ] {
            let error = settings.validate().expect_err(name);
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}
