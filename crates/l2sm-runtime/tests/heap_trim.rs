//! The heap trimmer trims once a burst is over, or while an endless one goes on, and never
//! without a burst. Real time, with margins no scheduling delay can cross.

use l2sm_runtime::{trim_heap, HeapTrimmer};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn wait_for_trims(t: &HeapTrimmer, n: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    while t.trims() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.trims()
}

#[tokio::test]
async fn a_burst_is_trimmed_once_it_is_quiet() {
    let t = Arc::new(HeapTrimmer::default());
    tokio::spawn(
        t.clone()
            .run(Duration::from_millis(50), Duration::from_secs(3600)),
    );
    for _ in 0..5 {
        t.freed();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(wait_for_trims(&t, 1, Duration::from_secs(10)).await, 1);
    // Quiet since: no further trim.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.trims(), 1);
}

#[tokio::test]
async fn an_endless_burst_is_trimmed_after_the_limit() {
    let t = Arc::new(HeapTrimmer::default());
    // Never quiet for an hour: only the limit can trigger a trim.
    tokio::spawn(
        t.clone()
            .run(Duration::from_secs(3600), Duration::from_millis(100)),
    );
    let busy = {
        let t = t.clone();
        tokio::spawn(async move {
            loop {
                t.freed();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let trims = wait_for_trims(&t, 2, Duration::from_secs(10)).await;
    busy.abort();
    assert!(trims >= 2, "trimmed {trims} times during an endless burst");
}

#[tokio::test]
async fn nothing_freed_nothing_trimmed() {
    let t = Arc::new(HeapTrimmer::default());
    tokio::spawn(
        t.clone()
            .run(Duration::from_millis(10), Duration::from_millis(10)),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.trims(), 0);
}

#[test]
fn trimming_a_heap_with_freed_memory_returns_some() {
    let blocks: Vec<Vec<u8>> = (0..2000).map(|i| vec![i as u8; 16 * 1024]).collect();
    assert_eq!(blocks.len(), 2000);
    drop(blocks);
    assert!(
        trim_heap(),
        "32 MiB freed in small blocks and nothing returned"
    );
}
