//! How the tests print what they saw, for a reader of `--nocapture` output:
//! byte sizes, an image's layers, indented excerpts. Every line a test prints
//! starts with `[<test name>]`.

use crate::image::Image;
use crate::scenario::Outcome;

/// One kibibyte.
pub const KIB: u64 = 1024;
/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// `1.23 MiB (1289748 B)`.
pub fn human(bytes: u64) -> String {
    format!("{:.2} MiB ({bytes} B)", bytes as f64 / MIB as f64)
}

/// An image's layer count and sizes, uncompressed and as stored, and each
/// layer's uncompressed size.
pub fn layer_figures(img: &Image) -> String {
    let sizes: Vec<String> = img
        .layers
        .iter()
        .map(|l| l.uncompressed_size.to_string())
        .collect();
    format!(
        "{} layer(s), {} uncompressed, {} stored; per layer (uncompressed B): [{}]",
        img.layers.len(),
        human(img.uncompressed_size()),
        human(img.stored_size()),
        sizes.join(", ")
    )
}

/// Prints an image's [`layer_figures`].
pub fn describe(test: &str, side: &str, img: &Image) {
    println!("[{test}] {side}: {}", layer_figures(img));
}

/// Prints both sides of an outcome.
pub fn describe_outcome(test: &str, out: &Outcome) {
    describe(test, "plain   ", &out.plain.image);
    describe(test, "squashed", &out.squashed.image);
}

/// Each line of `s` behind `    | `, to set output apart in a report.
pub fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn sizes_figures_and_excerpts() {
        assert_eq!(human(0), "0.00 MiB (0 B)");
        assert_eq!(human(1_289_748), "1.23 MiB (1289748 B)");
        assert_eq!(indent("a\n\nb\n"), "    | a\n    | \n    | b");
        assert_eq!(indent(""), "");
        let mut l = LayerBuilder::new();
        l.file("f", b"data", 0o644);
        let layer = l.finish();
        let img = image_of(&ImageSpec::new(vec![gzip(&layer), layer.clone()]));
        let n = layer.len();
        assert_eq!(
            layer_figures(&img),
            format!(
                "2 layer(s), {} uncompressed, {} stored; per layer (uncompressed B): [{n}, {n}]",
                human(2 * n as u64),
                human((gzip(&layer).len() + n) as u64)
            )
        );
    }
}
