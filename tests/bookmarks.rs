//! The kind of docs/writing-an-actor-kind.md (examples/bookmarks/kind.rs), tested the way the guide says a kind is
//! tested: a runtime on a temporary directory, real SQLite files, live files read through `support::observe_file`.
//! Stores in the owner's own file, refuses bad input without writing, delivers a share through the outbox, fires a
//! reminder after passivation, and patches its topic into exactly what a read returns.

mod support;

#[path = "../examples/bookmarks/kind.rs"]
mod kind;

use std::time::Duration;

use diesel::prelude::*;
use foundry::runtime::{patch, CallError, ListSchedules, TopicFrame};
use kind::{bookmarks, AddBookmark, BookmarkError, Bookmarks, GetShelf, ShareBookmark, TOPIC};

fn add(url: &str) -> AddBookmark {
    AddBookmark { url: url.into(), title: "A page".into(), remind_after: None }
}

#[actix_rt::test]
async fn a_bookmark_is_stored_in_its_owners_file() {
    let (rt, dir) = support::runtime(0);
    let shelves = rt.registry::<Bookmarks>();
    let alice = "alice".to_owned();
    let added = shelves.mutate(&alice, add("https://sqlite.org/")).await.unwrap();

    // A live actor holds its file exclusively: look at a copy.
    let mut db = support::observe_file(&dir.path().join("bookmarks/alice.sqlite3"));
    let urls: Vec<String> = bookmarks::table.select(bookmarks::url).load(&mut db).unwrap();
    assert_eq!(urls, ["https://sqlite.org/"]);
    let shelf = shelves.read(&alice, GetShelf).await.unwrap();
    assert_eq!(shelf.bookmarks, [added]);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn refused_input_changes_nothing_and_creates_nothing() {
    let (rt, dir) = support::runtime(0);
    let shelves = rt.registry::<Bookmarks>();
    let alice = "alice".to_owned();
    shelves.mutate(&alice, add("https://sqlite.org/")).await.unwrap();

    let refusals = [
        shelves.mutate(&alice, add("ftp://sqlite.org/")).await,
        shelves.mutate(&alice, add("https://sqlite.org/ x")).await,
        shelves.mutate(&alice, AddBookmark { title: " ".into(), ..add("https://example.com/") }).await,
        shelves.mutate(&alice, add("https://sqlite.org/")).await,
    ];
    let codes: Vec<&str> = refusals
        .iter()
        .map(|r| match r {
            Err(CallError::Handler(e)) => e.code(),
            other => panic!("not refused: {other:?}"),
        })
        .collect();
    assert_eq!(codes, ["invalid_input", "invalid_input", "invalid_input", "conflict"]);
    let shared = shelves.mutate(&alice, ShareBookmark { id: 99, with: "bob".into() }).await;
    assert!(matches!(shared, Err(CallError::Handler(BookmarkError::NotFound(99)))), "{shared:?}");
    let own = shelves.mutate(&alice, ShareBookmark { id: 1, with: alice.clone() }).await;
    assert!(matches!(own, Err(CallError::Handler(BookmarkError::Invalid { field: "with", .. }))), "{own:?}");

    let shelf = shelves.read(&alice, GetShelf).await.unwrap();
    assert_eq!((shelf.bookmarks.len(), shelf.shared), (1, 0));
    // Neither the refused share nor a read of an unknown key created a shelf.
    let carol = shelves.read_existing(&"carol".to_owned(), GetShelf).await;
    assert!(matches!(carol, Err(CallError::NotFound { .. })), "{carol:?}");
    let files: Vec<String> = std::fs::read_dir(dir.path().join("bookmarks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().all(|f| f.starts_with("alice.sqlite3")), "{files:?}");
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_shared_bookmark_reaches_the_other_shelf_through_the_outbox() {
    let (rt, dir) = support::runtime(0);
    let shelves = rt.registry::<Bookmarks>();
    let (alice, bob) = ("alice".to_owned(), "bob@example.com".to_owned());
    let added = shelves.mutate(&alice, add("https://sqlite.org/")).await.unwrap();
    shelves.mutate(&alice, ShareBookmark { id: added.id, with: bob.clone() }).await.unwrap();

    // Delivered by alice's outbox after her commit; the key is escaped into bob's file name.
    let bob_file = dir.path().join("bookmarks/bob%40example%2Ecom.sqlite3");
    support::eventually("bob's shelf holds the share", || {
        bob_file.exists()
            && bookmarks::table
                .select(bookmarks::from_user)
                .load::<Option<String>>(&mut support::observe_file(&bob_file))
                .is_ok_and(|from| from == [Some("alice".to_owned())])
    })
    .await;
    let bobs = shelves.read(&bob, GetShelf).await.unwrap();
    assert_eq!(bobs.bookmarks[0].url, "https://sqlite.org/");
    assert_eq!(shelves.read(&alice, GetShelf).await.unwrap().shared, 1);

    // Sharing it again delivers again, and bob's shelf keeps the one it has.
    shelves.mutate(&alice, ShareBookmark { id: added.id, with: bob.clone() }).await.unwrap();
    support::eventually("the second share is delivered", || {
        foundry::runtime::outbox::pending_count(&mut support::observe_file(&dir.path().join("bookmarks/alice.sqlite3")))
            .is_ok_and(|n| n == 0)
    })
    .await;
    assert_eq!(shelves.read(&bob, GetShelf).await.unwrap().bookmarks.len(), 1);
    assert_eq!(shelves.read(&alice, GetShelf).await.unwrap().shared, 2);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_reminder_fires_after_the_shelf_passivated() {
    let (rt, _dir) = support::runtime(0);
    let shelves = rt.registry::<Bookmarks>();
    let alice = "alice".to_owned();
    let later = AddBookmark { remind_after: Some(Duration::from_millis(200)), ..add("https://sqlite.org/") };
    shelves.mutate(&alice, later).await.unwrap();
    assert_eq!(shelves.read(&alice, ListSchedules::new()).await.unwrap().len(), 1);

    assert!(shelves.passivate(&alice).await);
    support::eventually("passivated", || !shelves.is_live(&alice)).await;
    // Nobody calls alice: the runtime's due index wakes her when the reminder is due.
    support::eventually("woken by the schedule", || shelves.is_live(&alice)).await;
    let shelf = support::eventually_some("reminded", || async {
        let shelf = shelves.read(&alice, GetShelf).await.unwrap();
        shelf.bookmarks[0].reminded.then_some(shelf)
    })
    .await;
    assert_eq!(shelf.bookmarks.len(), 1);
    assert!(shelves.read(&alice, ListSchedules::new()).await.unwrap().is_empty());
    rt.shutdown().await;
}

#[actix_rt::test]
async fn the_topic_patches_fold_into_what_a_read_returns() {
    let (rt, _dir) = support::runtime(0);
    let shelves = rt.registry::<Bookmarks>();
    let (alice, bob) = ("alice".to_owned(), "bob".to_owned());
    let mut sub = shelves.subscribe(&alice, TOPIC).await.unwrap();
    // The first frame is the full snapshot as it is now; every change after it comes as a patch.
    let Some(TopicFrame::Full(start)) = sub.next_frame().await else { panic!("a full snapshot first") };
    let mut doc: serde_json::Value = serde_json::from_str(start.snapshot.get()).unwrap();

    let first = shelves.mutate(&alice, add("https://a.example/")).await.unwrap();
    let later = AddBookmark { remind_after: Some(Duration::from_millis(100)), ..add("https://b.example/") };
    shelves.mutate(&alice, later).await.unwrap();
    shelves.mutate(&alice, ShareBookmark { id: first.id, with: bob.clone() }).await.unwrap();
    let from_bob = shelves.mutate(&bob, add("https://c.example/")).await.unwrap();
    shelves.mutate(&bob, ShareBookmark { id: from_bob.id, with: alice.clone() }).await.unwrap();
    let expected = support::eventually_some("the reminder and bob's share landed", || async {
        let shelf = shelves.read(&alice, GetShelf).await.unwrap();
        (shelf.bookmarks.len() == 3 && shelf.bookmarks[1].reminded).then_some(shelf)
    })
    .await;

    let (mut fulls, mut patches) = (0, 0);
    let expected = serde_json::to_value(&expected).unwrap();
    while doc != expected {
        let next = tokio::time::timeout(Duration::from_secs(10), sub.next_frame()).await;
        match next.unwrap_or_else(|_| panic!("the topic stopped at\n{doc}\nnot\n{expected}")).unwrap() {
            TopicFrame::Full(event) => {
                doc = serde_json::from_str(event.snapshot.get()).unwrap();
                fulls += 1;
            }
            TopicFrame::Patch(change) => {
                patch::apply(&mut doc, &change.ops().unwrap()).unwrap();
                patches += 1;
            }
        }
    }
    // Add, add, share, reminder, received: all came as patches, none needed a full snapshot.
    assert_eq!(fulls, 0);
    assert!(patches > 0);
    rt.shutdown().await;
}
