//! ffmpeg `-progress pipe:1` output: `key=value` lines, a block per update.

/// The output position in seconds, from an `out_time_us=` (or `out_time_ms=`,
/// which despite its name is also microseconds) line.
pub fn parse_progress_line(line: &str) -> Option<f64> {
    let (key, value) = line.trim().split_once('=')?;
    match key {
        "out_time_us" | "out_time_ms" => {
            value.parse::<i64>().ok().filter(|v| *v >= 0).map(|us| us as f64 / 1e6)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_progress_block() {
        let block = "frame=30\nfps=0.00\nstream_0_0_q=-1.0\nbitrate= 149.1kbits/s\ntotal_size=37641\n\
                     out_time_us=2020136\nout_time_ms=2020136\nout_time=00:00:02.020136\ndup_frames=0\n\
                     drop_frames=0\nspeed=16.1x\nprogress=end\n";
        let times: Vec<f64> = block.lines().filter_map(parse_progress_line).collect();
        assert_eq!(times, [2.020136, 2.020136]);
        assert_eq!(parse_progress_line("out_time_us=N/A"), None);
        assert_eq!(parse_progress_line("out_time_us=-5"), None);
    }
}
