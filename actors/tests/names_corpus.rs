//! The name-capture corpus: labelled caller replies to "may I have your name?" in several
//! languages, with tricky negatives, run through `extract_name`. Precision on negatives matters more
//! than recall (a wrong name is spoken back to the caller and stored against their number), so
//! every negative must give no name; positives need only reach the accuracy bar.
//!
//! See the table with: `cargo test -p switchboard-actors --test names_corpus -- --nocapture`

use switchboard_actors::names::extract_name;

const CORPUS: &str = include_str!("data/names_corpus.tsv");

/// Overall accuracy (positives and negatives) the extractor must keep. It scores 100% on this
/// corpus, which was written alongside the rules; the held-out block at the end of the file scored
/// 94% (63/67) on first run, so the bar sits between the two rather than at a number only a
/// corpus tuned against can reach.
const MIN_ACCURACY: f64 = 0.97;

struct Case {
    utterance: String,
    expected: Option<String>,
}

fn corpus() -> Vec<Case> {
    let mut cases: Vec<Case> = CORPUS
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with("# "))
        .map(|(n, line)| {
            let (utterance, expected) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("corpus line {} has no tab: {line:?}", n + 1));
            Case {
                utterance: utterance.to_owned(),
                expected: (expected != "-").then(|| expected.to_owned()),
            }
        })
        .collect();
    // Too long to keep in the file: a 500-character "name", bare and introduced.
    cases.push(Case {
        utterance: "a".repeat(500),
        expected: None,
    });
    cases.push(Case {
        utterance: format!("my name is {}", "Bartholomew".repeat(45)),
        expected: None,
    });
    cases
}

#[test]
fn corpus_accuracy_and_negative_precision() {
    let cases = corpus();
    let positives = cases.iter().filter(|c| c.expected.is_some()).count();
    let negatives = cases.len() - positives;
    assert!(cases.len() >= 180, "corpus has only {} cases", cases.len());
    assert!(negatives >= 70, "corpus has only {negatives} negatives");

    let mut correct = 0;
    let mut negatives_rejected = 0;
    let mut positives_found = 0;
    let mut misses = Vec::new();
    for case in &cases {
        let got = extract_name(&case.utterance);
        let ok = got == case.expected;
        if ok {
            correct += 1;
        }
        match &case.expected {
            None if got.is_none() => negatives_rejected += 1,
            Some(_) if ok => positives_found += 1,
            _ => {}
        }
        if !ok {
            misses.push(format!(
                "  {:<60} expected {:<24} got {}",
                format!("{:?}", shorten(&case.utterance)),
                case.expected.as_deref().unwrap_or("-"),
                got.as_deref().unwrap_or("-")
            ));
        }
    }

    let accuracy = ratio(correct, cases.len());
    let precision_on_negatives = ratio(negatives_rejected, negatives);
    let recall_on_positives = ratio(positives_found, positives);
    println!("name capture corpus: {} utterances", cases.len());
    println!(
        "  {:<28}{:>5} / {:<5}{:>7.1}%",
        "accuracy",
        correct,
        cases.len(),
        accuracy * 100.0
    );
    println!(
        "  {:<28}{:>5} / {:<5}{:>7.1}%",
        "negatives with no name",
        negatives_rejected,
        negatives,
        precision_on_negatives * 100.0
    );
    println!(
        "  {:<28}{:>5} / {:<5}{:>7.1}%",
        "positives with right name",
        positives_found,
        positives,
        recall_on_positives * 100.0
    );
    println!("misses ({}):", misses.len());
    for miss in &misses {
        println!("{miss}");
    }

    assert_eq!(
        negatives_rejected,
        negatives,
        "a negative produced a name:\n{}",
        misses.join("\n")
    );
    assert!(
        accuracy >= MIN_ACCURACY,
        "accuracy {:.1}% is below {:.0}%:\n{}",
        accuracy * 100.0,
        MIN_ACCURACY * 100.0,
        misses.join("\n")
    );
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        return 1.0;
    }
    part as f64 / whole as f64
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 56 {
        return s.to_owned();
    }
    let head: String = s.chars().take(50).collect();
    format!("{head}… ({} chars)", s.chars().count())
}
