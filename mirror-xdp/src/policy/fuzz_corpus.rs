//! Replays the fuzz corpus of the policy parser (fuzz/corpus/policy) with plain `cargo test`:
//! no input panics, and every rejection names a position inside the file it blames and says
//! on one line what is wrong. An input is policy text, then optionally a NUL byte and the contents of the
//! set file `set.txt` beside the policy (the format of fuzz/src/lib.rs).

use std::path::Path;

use super::Policy;

#[test]
fn fuzz_corpus_parses_or_fails_with_a_position() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/policy");
    let mut inputs: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 20, "only {} corpus inputs", inputs.len());
    let dir = tempfile::tempdir().expect("temp dir");
    let (policy_path, set_path) = (dir.path().join("policy.toml"), dir.path().join("set.txt"));
    let (mut accepted, mut rejected) = (0, 0);
    for input in &inputs {
        let data = std::fs::read(input).expect("read corpus input");
        let (text, set) = match data.iter().position(|&b| b == 0) {
            Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
            None => (&data[..], None),
        };
        match set {
            Some(bytes) => std::fs::write(&set_path, bytes).expect("write set file"),
            None => drop(std::fs::remove_file(&set_path)),
        }
        let Ok(text) = std::str::from_utf8(text) else {
            continue;
        };
        let parsed = std::panic::catch_unwind(|| Policy::parse(text, &policy_path))
            .unwrap_or_else(|_| panic!("{} panics the parser", input.display()));
        let Err(e) = parsed else {
            accepted += 1;
            continue;
        };
        rejected += 1;
        let contents = if e.file == policy_path {
            text.as_bytes()
        } else {
            assert_eq!(e.file, set_path, "{}: {e}", input.display());
            set.expect("the set file was written")
        };
        let lines = contents.iter().filter(|&&b| b == b'\n').count() + 1;
        assert!(
            (1..=lines).contains(&e.line)
                && e.column >= 1
                && !e.message.trim().is_empty()
                && !e.message.contains('\n'),
            "{}: not a clear error: {e}",
            input.display()
        );
    }
    eprintln!(
        "{} inputs: {accepted} accepted, {rejected} rejected",
        inputs.len()
    );
    assert!(accepted > 0 && rejected > 0, "the corpus should hold both");
}
