//! Topic statistics and the topic list.

use std::collections::HashMap;

use platform::Timestamp;

use super::{Error, Messaging};
use crate::input;
use crate::model::{Topic, TopicCounts, TopicStats, TopicSummary};

impl Messaging {
    /// Counts a topic's messages, and those waiting in its dead-letter topic.
    pub async fn stats(&self, topic: &str) -> Result<TopicStats, Error> {
        let topic = input::parse_topic(topic)?;
        let now = self.clock.now();
        let counts = self.store.counts(&topic, now).await?;
        let dead_lettered = match topic.dead_letter() {
            Some(dead_letter) => self.store.counts(&dead_letter, now).await?.total(),
            None => 0,
        };
        Ok(to_stats(&counts, dead_lettered, now))
    }

    /// Lists every topic that contains messages, by name, with its counts.
    pub async fn topics(&self) -> Result<Vec<TopicSummary>, Error> {
        let now = self.clock.now();
        let mut listed = self.store.all_counts(now).await?;
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let totals: HashMap<&str, u64> = listed
            .iter()
            .map(|(name, counts)| (name.as_str(), counts.total()))
            .collect();

        let summaries = listed
            .iter()
            .map(|(name, counts)| {
                let dead_lettered = Topic::parse(name)
                    .ok()
                    .and_then(|topic| topic.dead_letter())
                    .and_then(|dead_letter| totals.get(dead_letter.as_str()).copied())
                    .unwrap_or(0);
                TopicSummary {
                    topic: name.clone(),
                    stats: to_stats(counts, dead_lettered, now),
                }
            })
            .collect();
        Ok(summaries)
    }
}

fn to_stats(counts: &TopicCounts, dead_lettered: u64, now: Timestamp) -> TopicStats {
    let oldest_ready_age_ms = counts
        .oldest_ready
        .map(|oldest| now.duration_since(oldest).as_millis() as u64)
        .unwrap_or(0);
    TopicStats {
        ready: counts.ready,
        leased: counts.leased,
        delayed: counts.delayed,
        dead_lettered,
        oldest_ready_age_ms,
    }
}
