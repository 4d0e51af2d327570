DROP TABLE bookmarks;
DROP TABLE shelf;
