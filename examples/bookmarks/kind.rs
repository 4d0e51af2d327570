//! The `bookmarks` kind of docs/writing-an-actor-kind.md: one actor per user (key: the user id) owning that user's
//! bookmarks in its own SQLite file, `<data>/bookmarks/<key>.sqlite3`. Every step of the guide is here: the schema of
//! `migrations/bookmarks/`, the entity, a read, mutations, a topic with patches, a delivery to another actor through
//! the outbox, a durable schedule and the errors. The guide quotes this file; tests/readme.rs checks that it still does.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::schedule::now_ms;
use foundry::runtime::{
    embed_migrations, Accepts, Delivery, EmbeddedMigrations, Entity, KindConfig, Mutation, PatchOp, Read, Scheduled,
    SnapshotError, Tx,
};
use serde::{Deserialize, Serialize};

diesel::table! {
    shelf (id) {
        id -> Integer,
        shared -> BigInt,
    }
}

diesel::table! {
    bookmarks (id) {
        id -> BigInt,
        url -> Text,
        title -> Text,
        from_user -> Nullable<Text>,
        reminded -> Bool,
        created_at -> BigInt,
    }
}

/// What a bookmark message can refuse with. Each variant has a stable code for the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum BookmarkError {
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0} is already on this shelf")]
    Duplicate(String),
    #[error("no bookmark {0}")]
    NotFound(i64),
    #[error("storage: {0}")]
    Db(#[from] diesel::result::Error),
}

impl BookmarkError {
    /// The stable machine-readable code (docs/API.md lists every code a client can get).
    pub fn code(&self) -> &'static str {
        match self {
            BookmarkError::Invalid { .. } => "invalid_input",
            BookmarkError::Duplicate(_) => "conflict",
            BookmarkError::NotFound(_) => "not_found",
            BookmarkError::Db(_) => "storage",
        }
    }
}

/// One user's shelf. It holds only its key: the state is in the database, so a rolled-back mutation or a restart
/// can never leave the value stale.
pub struct Bookmarks {
    owner: String,
}

/// The one topic: the shelf as [`GetShelf`] reads it.
pub const TOPIC: &str = "shelf";

impl Entity for Bookmarks {
    type Key = String;
    const KIND: &'static str = "bookmarks";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/bookmarks");

    fn load(key: &String, _db: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Bookmarks { owner: key.clone() })
    }

    fn config() -> KindConfig {
        // A shelf is used in bursts: close its file after a minute without a message.
        KindConfig { idle_timeout: Duration::from_secs(60), ..KindConfig::default() }
    }

    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<serde_json::Value, SnapshotError> {
        match topic {
            TOPIC => Ok(serde_json::to_value(shelf_view(&self.owner, db)?)?),
            _ => Err(SnapshotError::UnknownTopic { kind: Self::KIND, topic: topic.to_owned() }),
        }
    }

    fn accepts(a: &mut Accepts<Self>) {
        a.accept::<ReceiveBookmark>().schedule::<Remind>();
    }
}

/// A stored bookmark (camelCase on the wire, like every reply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Queryable, Selectable)]
#[diesel(table_name = bookmarks, check_for_backend(diesel::sqlite::Sqlite))]
#[serde(rename_all = "camelCase")]
pub struct Bookmark {
    pub id: i64,
    pub url: String,
    pub title: String,
    pub from_user: Option<String>,
    pub reminded: bool,
    pub created_at: i64,
}

/// The shelf: the snapshot of [`TOPIC`] and the answer of [`GetShelf`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shelf {
    pub owner: String,
    /// Bookmarks this shelf has shared with others.
    pub shared: i64,
    /// Oldest first (by id): a new bookmark is always the last.
    pub bookmarks: Vec<Bookmark>,
}

fn shelf_view(owner: &str, db: &mut SqliteConnection) -> QueryResult<Shelf> {
    let shared = shelf::table.select(shelf::shared).find(1).first(db)?;
    let bookmarks = bookmarks::table.select(Bookmark::as_select()).order(bookmarks::id).load(db)?;
    Ok(Shelf { owner: owner.to_owned(), shared, bookmarks })
}

/// Reads the shelf.
pub struct GetShelf;

impl Read for GetShelf {
    type Entity = Bookmarks;
    type Output = Shelf;
    type Error = BookmarkError;

    fn read(self, shelf: &Bookmarks, db: &mut SqliteConnection) -> Result<Shelf, BookmarkError> {
        Ok(shelf_view(&shelf.owner, db)?)
    }
}

/// Adds a bookmark; with `remind_after`, marks it `reminded` that much later (a durable schedule).
pub struct AddBookmark {
    pub url: String,
    pub title: String,
    pub remind_after: Option<Duration>,
}

impl AddBookmark {
    /// The checks that need no database: the HTTP layer runs them before it creates anything.
    pub fn validate(&self) -> Result<(), BookmarkError> {
        let invalid = |field, message: &str| BookmarkError::Invalid { field, message: message.to_owned() };
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) || self.url.len() > 2048 {
            return Err(invalid("url", "must be an http(s) URL of at most 2048 bytes"));
        }
        if self.url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("url", "must not contain spaces or control characters"));
        }
        if self.title.trim().is_empty() || self.title.chars().count() > 200 || self.title.chars().any(char::is_control)
        {
            return Err(invalid("title", "must be 1 to 200 characters, without control characters"));
        }
        Ok(())
    }
}

impl Mutation for AddBookmark {
    type Entity = Bookmarks;
    type Output = Bookmark;
    type Error = BookmarkError;

    fn apply(self, _: &Bookmarks, tx: &mut Tx<'_>) -> Result<Bookmark, BookmarkError> {
        self.validate()?;
        let known: i64 = bookmarks::table.filter(bookmarks::url.eq(&self.url)).count().get_result(tx.conn())?;
        if known > 0 {
            return Err(BookmarkError::Duplicate(self.url));
        }
        let added = insert(tx, &self.url, &self.title, None)?;
        if let Some(after) = self.remind_after {
            tx.schedule_after(after, &Remind { id: added.id })?;
        }
        Ok(added)
    }
}

/// Stores a bookmark and tells subscribers: it is the last of the snapshot's list, so the patch appends it.
fn insert(tx: &mut Tx<'_>, url: &str, title: &str, from_user: Option<&str>) -> QueryResult<Bookmark> {
    let row: Bookmark = diesel::insert_into(bookmarks::table)
        .values((
            bookmarks::url.eq(url),
            bookmarks::title.eq(title),
            bookmarks::from_user.eq(from_user),
            bookmarks::created_at.eq(now_ms()),
        ))
        .returning(Bookmark::as_returning())
        .get_result(tx.conn())?;
    let value = serde_json::to_value(&row).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    tx.patch(TOPIC, vec![PatchOp::add("/bookmarks/-", value)]);
    Ok(row)
}

/// Shares one of this shelf's bookmarks with another user's shelf, through the outbox.
pub struct ShareBookmark {
    pub id: i64,
    pub with: String,
}

impl Mutation for ShareBookmark {
    type Entity = Bookmarks;
    type Output = ();
    type Error = BookmarkError;

    fn apply(self, shelf: &Bookmarks, tx: &mut Tx<'_>) -> Result<(), BookmarkError> {
        if self.with == shelf.owner {
            return Err(BookmarkError::Invalid { field: "with", message: "a shelf does not share with itself".into() });
        }
        let found: Option<Bookmark> =
            bookmarks::table.find(self.id).select(Bookmark::as_select()).first(tx.conn()).optional()?;
        let found = found.ok_or(BookmarkError::NotFound(self.id))?;
        // Delivered after this transaction commits, and only if it does; at most once in effect.
        tx.send(&self.with, &ReceiveBookmark { from: shelf.owner.clone(), url: found.url, title: found.title })?;
        let shared: i64 = diesel::update(shelf::table.find(1))
            .set(shelf::shared.eq(shelf::shared + 1))
            .returning(shelf::shared)
            .get_result(tx.conn())?;
        tx.patch(TOPIC, vec![PatchOp::replace("/shared", shared.into())]);
        Ok(())
    }
}

/// A bookmark another shelf shared with this one; arrives through that shelf's outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiveBookmark {
    pub from: String,
    pub url: String,
    pub title: String,
}

impl Mutation for ReceiveBookmark {
    type Entity = Bookmarks;
    /// Whether the bookmark was new here.
    type Output = bool;
    type Error = BookmarkError;

    fn apply(self, _: &Bookmarks, tx: &mut Tx<'_>) -> Result<bool, BookmarkError> {
        // A URL already on the shelf stays as it is: a refusal would dead-letter the message for nothing.
        let known: i64 = bookmarks::table.filter(bookmarks::url.eq(&self.url)).count().get_result(tx.conn())?;
        if known > 0 {
            return Ok(false);
        }
        insert(tx, &self.url, &self.title, Some(&self.from))?;
        Ok(true)
    }
}

impl Delivery for ReceiveBookmark {
    /// Stored in outbox rows: renaming it strands messages not yet delivered.
    const NAME: &'static str = "bookmarks.receive";
}

/// Marks a bookmark `reminded`; scheduled by [`AddBookmark`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remind {
    pub id: i64,
}

impl Mutation for Remind {
    type Entity = Bookmarks;
    type Output = ();
    type Error = BookmarkError;

    fn apply(self, _: &Bookmarks, tx: &mut Tx<'_>) -> Result<(), BookmarkError> {
        let changed =
            diesel::update(bookmarks::table.find(self.id)).set(bookmarks::reminded.eq(true)).execute(tx.conn())?;
        if changed == 1 {
            // Its place in the snapshot's list (ordered by id) is the number of rows before it.
            let index: i64 = bookmarks::table.filter(bookmarks::id.lt(self.id)).count().get_result(tx.conn())?;
            tx.patch(TOPIC, vec![PatchOp::replace(format!("/bookmarks/{index}/reminded"), true.into())]);
        }
        Ok(())
    }
}

impl Scheduled for Remind {
    /// Stored in schedule rows: renaming it strands schedules already set.
    const NAME: &'static str = "bookmarks.remind";
}
