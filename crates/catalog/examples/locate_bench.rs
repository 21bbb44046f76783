//! How long placing a petition by the places its text names takes
//! (`Gazetteer::resolve_message`, used when a ticket has no address):
//! `cargo run --release -p minyi-catalog --example locate_bench`.

use minyi_catalog::Gazetteer;
fn main() {
    let g = Gazetteer::guangming();
    let short = "你好，在翠湖社区这边，楼上邻居每天半夜跺脚，噪音很大，请处理";
    let long: String = "我们小区的问题反映了很多次一直没有解决，".repeat(60);
    for (name, text) in [
        ("short", short.to_string()),
        ("1000+ chars, no place", long),
    ] {
        let n = 2000;
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = std::time::Instant::now();
            std::hint::black_box(g.resolve_message(std::hint::black_box(&text)));
            times.push(t.elapsed().as_nanos() as f64 / 1000.0);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{name}: p50 {:.1} µs p99 {:.1} µs ({} places)",
            times[n / 2],
            times[n * 99 / 100],
            g.places().len()
        );
    }
}
