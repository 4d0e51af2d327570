//! The guide's kind at work (docs/writing-an-actor-kind.md): alice follows her shelf's topic, adds a bookmark with
//! a reminder, is refused a bad one, shares the bookmark with bob through her outbox; the reminder fires after her
//! actor passivated; the snapshot folded from the topic's patches equals a fresh read.
//!
//! Run: `cargo run --example bookmarks` (data goes to a temporary directory).

mod kind;

use std::error::Error;
use std::time::Duration;

use foundry::runtime::{patch, CallError, Runtime, RuntimeConfig, Subscription, TopicFrame};
use kind::{AddBookmark, Bookmarks, GetShelf, ShareBookmark, Shelf, TOPIC};

/// Applies the subscription's next frame to `doc`: a full snapshot replaces it, a patch changes it.
async fn follow(sub: &mut Subscription, doc: &mut serde_json::Value) -> Result<(), Box<dyn Error>> {
    let frame = tokio::time::timeout(Duration::from_secs(10), sub.next_frame()).await?.ok_or("the topic ended")?;
    match frame {
        TopicFrame::Full(event) => *doc = serde_json::from_str(event.snapshot.get())?,
        TopicFrame::Patch(change) => patch::apply(doc, &change.ops()?)?,
    }
    Ok(())
}

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::start(RuntimeConfig::new(dir.path()))?;
    let shelves = runtime.registry::<Bookmarks>();
    let (alice, bob) = ("alice".to_owned(), "bob".to_owned());

    let mut sub = shelves.subscribe(&alice, TOPIC).await?;
    let mut seen = serde_json::Value::Null;
    follow(&mut sub, &mut seen).await?;

    let add = AddBookmark {
        url: "https://sqlite.org/wal.html".into(),
        title: "Write-Ahead Logging".into(),
        remind_after: Some(Duration::from_millis(300)),
    };
    let added = shelves.mutate(&alice, add).await?;
    println!("added {} ({})", added.id, added.url);

    let bad = AddBookmark { url: "ftp://example.com".into(), title: "FTP".into(), remind_after: None };
    match shelves.mutate(&alice, bad).await {
        Err(CallError::Handler(e)) => println!("refused: {} ({e})", e.code()),
        other => return Err(format!("a bad URL was not refused: {other:?}").into()),
    }

    match shelves.read_existing(&"carol".to_owned(), GetShelf).await {
        Err(CallError::NotFound { .. }) => println!("carol has no shelf, and none was created"),
        other => return Err(format!("carol: {other:?}").into()),
    }

    shelves.mutate(&alice, ShareBookmark { id: added.id, with: bob.clone() }).await?;
    let mut bobs = shelves.read(&bob, GetShelf).await?;
    for _ in 0..100 {
        if !bobs.bookmarks.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        bobs = shelves.read(&bob, GetShelf).await?;
    }
    let first = bobs.bookmarks.first().ok_or("the shared bookmark did not reach bob")?;
    println!("bob received {} from {:?}", first.url, first.from_user);

    // The reminder is a row in alice's database: it fires even though her actor closes its file now.
    shelves.passivate(&alice).await;
    println!("alice live: {}", shelves.is_live(&alice));
    while !seen["bookmarks"][0]["reminded"].as_bool().unwrap_or(false) {
        follow(&mut sub, &mut seen).await?;
    }
    let now: Shelf = shelves.read(&alice, GetShelf).await?;
    println!("reminded after passivation: {}", now.bookmarks[0].reminded);
    println!("snapshot folded from patches equals GetShelf: {}", serde_json::from_value::<Shelf>(seen)? == now);

    runtime.shutdown().await;
    Ok(())
}
