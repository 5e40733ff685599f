//! `bench-client plot`: the SVG of real runs' outputs (--json, --hlog,
//! --hgrm) parses, holds one labelled curve per input, and keeps every
//! label inside the picture. Two short runs (`--quick`) on loopback.

use roxmltree::{Document, Node};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use uringtls_tests::{start_engine, test_bin};

fn bench_client(args: &[&str]) -> Output {
    Command::new(test_bin("bench-client-under-test"))
        .args(args)
        .output()
        .expect("run bench-client")
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// Runs `names` one after another against one engine, each writing
/// NAME.json, NAME.hlog and NAME.hgrm into `dir`.
fn runs(dir: &Path, names: &[&str]) {
    let e = start_engine(&["--shards", "1", "--service", "http"]);
    let url = format!("https://{}/", e.addr());
    for name in names {
        let f = |ext: &str| dir.join(format!("{name}.{ext}"));
        let out = bench_client(&[
            "http",
            &url,
            "-k",
            "--quick",
            "-q",
            "--json",
            s(&f("json")),
            "--hlog",
            s(&f("hlog")),
            "--hgrm",
            s(&f("hgrm")),
        ]);
        ok(&out, name);
    }
}

/// Runs `plot` with `args`, returns the SVG text written to `dir/NAME.svg`.
fn plot(dir: &Path, name: &str, args: &[&str]) -> String {
    let svg = dir.join(format!("{name}.svg"));
    let mut all = vec!["plot"];
    all.extend_from_slice(args);
    all.extend(["-o", s(&svg)]);
    ok(&bench_client(&all), &format!("plot {args:?}"));
    std::fs::read_to_string(&svg).expect("svg written")
}

fn attr(n: &Node, name: &str) -> f64 {
    n.attribute(name)
        .and_then(|v| v.trim_end_matches("px").parse().ok())
        .unwrap_or(0.0)
}

/// Every text of the SVG with its estimated box (left, top, right, bottom):
/// width from `plotting::text_width` and the anchor, height one font size
/// placed by `dy` (plotters hangs texts from `y` with `0.76em`, centres them
/// with `0.5ex`, stands them on `y` with `-0.5ex`); texts turned by
/// `rotate(...)` stand on end, one font size either side of `x`.
fn text_boxes(doc: &Document) -> Vec<(String, [f64; 4])> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            let text = n.text().unwrap_or("").trim().to_string();
            let (x, y, size) = (attr(&n, "x"), attr(&n, "y"), attr(&n, "font-size"));
            let w = plotting::text_width(&text, size);
            let along = match n.attribute("text-anchor") {
                Some("middle") => (-w / 2.0, w / 2.0),
                Some("end") => (-w, 0.0),
                _ => (0.0, w),
            };
            let (up, down) = match n.attribute("dy") {
                Some(d) if d.ends_with("em") && !d.starts_with('-') => (0.0, size),
                Some("0.5ex") => (size / 2.0, size / 2.0),
                Some("-0.5ex") => (size, 0.0),
                _ => (size, size * 0.3),
            };
            let b = if n
                .attribute("transform")
                .is_some_and(|t| t.contains("rotate"))
            {
                [x - size, y - along.1, x + size, y - along.0]
            } else {
                [x + along.0, y - up, x + along.1, y + down]
            };
            (text, b)
        })
        .collect()
}

/// Parses the SVG; checks the axis labels are there and every text lies
/// inside the viewBox; returns the data lines' colours and the texts.
fn check_svg(svg: &str, axis_labels: &[&str]) -> (Vec<String>, BTreeSet<String>) {
    let doc = Document::parse(svg).expect("the SVG is well-formed XML");
    let root = doc.root_element();
    assert!(root.has_tag_name("svg"));
    let vb: Vec<f64> = root
        .attribute("viewBox")
        .expect("viewBox")
        .split_whitespace()
        .map(|v| v.parse().expect("number"))
        .collect();
    let texts = text_boxes(&doc);
    for (text, [l, t, r, b]) in &texts {
        assert!(
            *l >= vb[0] && *t >= vb[1] && *r <= vb[0] + vb[2] && *b <= vb[1] + vb[3],
            "`{text}` at {l:.0},{t:.0}..{r:.0},{b:.0} reaches outside the viewBox {vb:?}"
        );
    }
    let names: BTreeSet<String> = texts.into_iter().map(|t| t.0).collect();
    for label in axis_labels {
        // `a|b`: either (a latency axis is in µs or ms, by the data).
        assert!(
            label.split('|').any(|l| names.contains(l)),
            "no `{label}` among {names:?}"
        );
    }
    // Data lines are 2 px wide; grid, ticks and legend swatches 1 px.
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
        .map(|n| n.attribute("stroke").unwrap_or("").to_string())
        .collect();
    (lines, names)
}

const PERCENTILE_AXIS: [&str; 8] = [
    "percentile",
    "50%",
    "90%",
    "99%",
    "99.9%",
    "99.99%",
    "99.999%",
    "latency (µs)|latency (ms)",
];

#[test]
fn plot_draws_one_labelled_curve_per_input_for_json_hlog_and_hgrm_inside_the_picture() {
    let dir = tempfile::tempdir().expect("tempdir");
    runs(dir.path(), &["uringtls", "peer"]);
    let f = |name: &str, ext: &str| dir.path().join(format!("{name}.{ext}"));
    for ext in ["json", "hlog", "hgrm"] {
        let (a, b) = (f("uringtls", ext), f("peer", ext));
        let svg = plot(dir.path(), ext, &[s(&a), s(&b)]);
        let (lines, texts) = check_svg(&svg, &PERCENTILE_AXIS);
        assert_eq!(lines.len(), 2, "{ext}: one curve per input: {lines:?}");
        assert_ne!(lines[0], lines[1], "{ext}: curves told apart by colour");
        for label in ["uringtls", "peer"] {
            assert!(texts.contains(label), "{ext}: legend lacks {label}");
        }
    }
    // All three kinds at once, named by --label.
    let inputs: Vec<PathBuf> = vec![
        f("uringtls", "json"),
        f("uringtls", "hlog"),
        f("peer", "hgrm"),
    ];
    let mut args: Vec<&str> = inputs.iter().map(|p| s(p)).collect();
    args.extend([
        "--label",
        "from json",
        "--label",
        "from hlog",
        "--label",
        "from hgrm",
    ]);
    args.extend(["--title", "three formats"]);
    let svg = plot(dir.path(), "mixed", &args);
    let (lines, texts) = check_svg(&svg, &PERCENTILE_AXIS);
    assert_eq!(lines.iter().collect::<BTreeSet<_>>().len(), 3, "{lines:?}");
    for label in ["from json", "from hlog", "from hgrm", "three formats"] {
        assert!(texts.contains(label), "no {label}");
    }
}

#[test]
fn plot_draws_intervals_and_phases_and_an_html_page_and_refuses_what_a_file_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    runs(dir.path(), &["run"]);
    let f = |ext: &str| dir.path().join(format!("run.{ext}"));
    let svg = plot(dir.path(), "time", &["--kind", "over-time", s(&f("hlog"))]);
    let axis = [
        "operations / s",
        "p99 latency (µs)|p99 latency (ms)",
        "time since measuring started (s)",
        "run",
    ];
    let (lines, _) = check_svg(&svg, &axis);
    assert_eq!(lines.len(), 2, "throughput and p99 lines: {lines:?}");

    let html = dir.path().join("run.html");
    let svg = plot(
        dir.path(),
        "phases",
        &["--kind", "phases", s(&f("json")), "--html", s(&html)],
    );
    let (_, texts) = check_svg(
        &svg,
        &["connect", "handshake", "first byte", "total", "p99"],
    );
    assert!(texts.contains("run: latency by phase"), "{texts:?}");
    let page = std::fs::read_to_string(&html).expect("html written");
    assert_eq!(
        page.matches("<svg").count(),
        2,
        "phases + percentiles (a JSON has no intervals)"
    );
    assert!(page.contains("<td>run</td>"), "summary table row");

    // What a file cannot give is refused with its name.
    let out = bench_client(&[
        "plot",
        "--kind",
        "over-time",
        s(&f("json")),
        "-o",
        s(&dir.path().join("x.svg")),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("run.json: --kind over-time needs interval logs"),
        "{stderr}"
    );
    let out = bench_client(&[
        "plot",
        "--kind",
        "phases",
        s(&f("hgrm")),
        "-o",
        s(&dir.path().join("x.svg")),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run.hgrm: no connect, handshake or first-byte latencies"),
        "{stderr}"
    );
}
