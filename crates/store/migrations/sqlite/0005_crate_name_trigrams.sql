-- Crate search looks for names containing the typed text anywhere ("codec" finds
-- "tokio-codec"), which no B-tree index answers: every search read the whole crates table.
-- An FTS5 index of each name's trigrams finds the candidates for any text of three
-- characters or more; shorter texts still scan. The index holds no copy of the names
-- (`content='crates'`) and triggers keep it in step with the table.
CREATE VIRTUAL TABLE crate_name_trigrams USING fts5(
    name, content = 'crates', content_rowid = 'id', tokenize = 'trigram'
);
INSERT INTO crate_name_trigrams (crate_name_trigrams) VALUES ('rebuild');

CREATE TRIGGER crates_trigrams_insert AFTER INSERT ON crates BEGIN
    INSERT INTO crate_name_trigrams (rowid, name) VALUES (new.id, new.name);
END;
CREATE TRIGGER crates_trigrams_delete AFTER DELETE ON crates BEGIN
    INSERT INTO crate_name_trigrams (crate_name_trigrams, rowid, name)
        VALUES ('delete', old.id, old.name);
END;
CREATE TRIGGER crates_trigrams_rename AFTER UPDATE OF name ON crates BEGIN
    INSERT INTO crate_name_trigrams (crate_name_trigrams, rowid, name)
        VALUES ('delete', old.id, old.name);
    INSERT INTO crate_name_trigrams (rowid, name) VALUES (new.id, new.name);
END;

-- Nothing reads names through lower(name) any more (and an index on the left side of a LIKE
-- makes SQLite prepare the statement again whenever the pattern changes).
DROP INDEX crates_lower_name;
