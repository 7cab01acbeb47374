//! Suggesting names: when a table, mart or column is not found, the known names closest to
//! what was typed ("did you mean 'ad_performance'?").

/// Edit distance (insertions, deletions, substitutions) between two names, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Whether `known` is close enough to `typed` to suggest: within edit distance 2 (ignoring
/// case), or one containing the other.
pub fn is_close(known: &str, typed: &str) -> bool {
    let (known, typed) = (known.to_lowercase(), typed.to_lowercase());
    known.contains(&typed) || typed.contains(&known) || edit_distance(&known, &typed) <= 2
}

/// The known names close to `typed`, closest first, at most three.
pub fn closest<'a, I>(known: I, typed: &str) -> Vec<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lowered = typed.to_lowercase();
    let mut close: Vec<(usize, &str)> = known
        .into_iter()
        .filter(|k| is_close(k, typed))
        .map(|k| (edit_distance(&k.to_lowercase(), &lowered), k))
        .collect();
    close.sort();
    close.dedup();
    close.into_iter().take(3).map(|(_, k)| k).collect()
}

/// Names as `'a', 'b'` for messages.
pub fn join_quoted<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("'{}'", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_closest_first() {
        assert!(is_close("ad_performance", "ad_perfomance"));
        assert!(is_close("meta_insights", "insights"));
        assert!(is_close("AD_PERFORMANCE", "ad_performanc"));
        assert!(!is_close("fx_rates", "ad_performance"));
        let known = [
            "channel_daily",
            "ad_performance",
            "ad_performances_old",
            "fx_rates",
        ];
        assert_eq!(closest(known, "ad_perfomance"), vec!["ad_performance"]);
        assert_eq!(
            closest(known, "performance"),
            vec!["ad_performance", "ad_performances_old"]
        );
        assert!(closest(known, "zzz").is_empty());
        assert_eq!(join_quoted(&["a", "b"]), "'a', 'b'");
    }
}
