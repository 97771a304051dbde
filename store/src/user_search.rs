//! Typo-tolerant user search by 3-grams, as a trigram analyzer would do it:
//! a name is indexed under every 3-character window of itself (padded, so
//! that beginnings weigh), and a query ranks names by how many windows they
//! share with it (Jaccard similarity). Pure functions here; the
//! directories keep the index (fjall keyspace, Redis sets).

use std::collections::{BTreeSet, HashMap};

/// Names sharing less than this with the query are not results.
pub const MIN_SIMILARITY: f64 = 0.2;
/// Most results a search returns.
pub const MAX_RESULTS: usize = 50;

/// The 3-grams of `text`, lower-cased, padded with two spaces in front and
/// one behind (`"ann"` → `"  a"`, `" an"`, `"ann"`, `"nn "`).
pub fn trigrams(text: &str) -> BTreeSet<String> {
    let padded: Vec<char> = format!("  {} ", text.trim().to_lowercase())
        .chars()
        .collect();
    padded
        .windows(3)
        .map(|w| w.iter().collect::<String>())
        .collect()
}

/// Jaccard similarity of two trigram sets.
pub fn similarity(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    let shared = a.intersection(b).count();
    let union = a.len() + b.len() - shared;
    if union == 0 {
        0.0
    } else {
        shared as f64 / union as f64
    }
}

/// Ranks `candidates` (names that share at least one trigram with the
/// query) by similarity to `query`, best first, ties by name; keeps those
/// at [`MIN_SIMILARITY`] or above, at most `limit`.
pub fn rank<'a>(
    query: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    limit: usize,
) -> Vec<(String, f64)> {
    let q = trigrams(query);
    let mut scored: HashMap<&str, f64> = HashMap::new();
    for name in candidates {
        scored
            .entry(name)
            .or_insert_with(|| similarity(&q, &trigrams(name)));
    }
    let mut ranked: Vec<(String, f64)> = scored
        .into_iter()
        .filter(|(_, s)| *s >= MIN_SIMILARITY)
        .map(|(n, s)| (n.to_string(), s))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(limit.min(MAX_RESULTS));
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigrams_are_padded_and_lower_cased() {
        let t: Vec<String> = trigrams("Ann").into_iter().collect();
        assert_eq!(t, ["  a", " an", "ann", "nn "]);
        assert!(trigrams("").iter().all(|t| t.trim().is_empty()));
    }

    #[test]
    fn typos_still_find_the_name_and_exact_matches_rank_first() {
        let names = ["alexander", "alexandra", "alex", "sandra", "bob"];
        let ranked = rank("alexnder", names, 10);
        assert_eq!(ranked[0].0, "alexander", "one letter missing: {ranked:?}");
        assert!(ranked.iter().all(|(n, _)| n != "bob"));
        let exact = rank("alex", names, 10);
        assert_eq!(exact[0], ("alex".to_string(), 1.0));
        assert!(
            exact.windows(2).all(|w| w[0].1 >= w[1].1),
            "ranked: {exact:?}"
        );
        assert!(rank("zzzz", names, 10).is_empty());
        assert_eq!(rank("alex", names, 1).len(), 1);
    }
}
