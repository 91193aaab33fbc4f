//! Multipart (`put_large`, parallel parts) against one `PutObject` (`put`), on the S3 the
//! standard AWS chain points at — for `cargo xtask bench`, the local emulator.
//!
//! `cargo run -p starburst-aws --example s3_throughput -- <bucket> [MiB] [reps]`

use std::time::Instant;

use bytes::Bytes;
use starburst_aws::{Aws, S3Options, S3Store};
use starburst_cloud::{ObjectPath, ObjectStore};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bucket = args
        .next()
        .ok_or("usage: s3_throughput <bucket> [MiB] [reps]")?;
    let mib: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100);
    let reps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let aws = Aws::from_env().await;
    let data = Bytes::from(
        (0..mib * 1024 * 1024)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    let path = ObjectPath::parse("bench/throughput")?;
    println!("object: {mib} MiB, {reps} repetitions, median MiB/s");
    let mut single = Vec::new();
    let store = S3Store::new(&aws, &bucket, "bench", S3Options::default())?;
    for _ in 0..reps {
        let t = Instant::now();
        store.put(&path, data.clone()).await?;
        single.push(mib as f64 / t.elapsed().as_secs_f64());
    }
    let single = median(single);
    println!("single PutObject: {single:.1} MiB/s");
    for (part_mib, parallel) in [(8, 1), (8, 4), (8, 8), (16, 8)] {
        let options = S3Options::default()
            .with_part_size(part_mib * 1024 * 1024)
            .with_parallelism(parallel);
        let store = S3Store::new(&aws, &bucket, "bench", options)?;
        let mut rates = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            store.put_large(&path, data.clone()).await?;
            rates.push(mib as f64 / t.elapsed().as_secs_f64());
        }
        let rate = median(rates);
        println!(
            "multipart {part_mib} MiB parts x {parallel} in parallel: {rate:.1} MiB/s ({:.2}x single)",
            rate / single
        );
    }
    let t = Instant::now();
    let back = store.get(&path).await?;
    println!(
        "GetObject: {:.1} MiB/s",
        mib as f64 / t.elapsed().as_secs_f64()
    );
    assert_eq!(back.len(), data.len());
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
