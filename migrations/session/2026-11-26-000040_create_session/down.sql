DROP TABLE transcript; DROP TABLE session_meta;
