//! Typed values: [`CacheAside::write_as`] and [`CacheAside::get_as`] over any `serde` type, so
//! no caller writes the same byte glue.
//!
//! **The codec** is MessagePack with field names (`rmp-serde`, `to_vec_named`): smaller and
//! faster than JSON (the bench below prints both, side by side), well kept,
//! and self-describing, so schema evolution follows serde's own rules instead of reading bytes
//! by position (a positional codec such as postcard, smaller still, would read an entry written
//! by a struct whose fields were reordered as silently wrong values). `cargo bench -p containers
//! --bench tiers` prints its size and speed beside JSON's.
//!
//! **Schema evolution.** An entry written by an older struct decodes when the change is one serde
//! accepts: a new field with `#[serde(default)]`, a field removed (ignored unless the struct
//! denies unknown fields), a renamed one with `#[serde(alias)]`. Anything else does not decode,
//! and a cache entry that does not decode as `T` is a miss: it is deleted from both tiers (a
//! delete, not a tombstone, so the database's row at that version still fills) and the read goes
//! on to the database. A database row that does not decode is [`Error::Decode`], naming the key
//! and the type: the source of truth holds something `T` cannot read. Never a panic. The
//! envelope's version check (every entry carries its key and version) is unchanged underneath.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::*;

/// A value read as `T`, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Typed<T> {
    pub value: T,
    pub version: u64,
    pub source: Source,
}

/// `value` as the bytes [`CacheAside::write_as`] stores.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(value).map_err(|e| e.to_string())
}

/// The inverse of [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
}

impl<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy> CacheAside<R, M, S, St> {
    /// [`CacheAside::write`] of `value`, encoded ([`encode`]).
    pub async fn write_as<T: Serialize>(&self, key: &Key, value: &T) -> Result<Written, Error> {
        let bytes = encode(value).map_err(|why| Error::Encode {
            key: key.to_string(),
            why,
        })?;
        self.write(key, &bytes).await
    }

    /// [`CacheAside::get`] of a value written by [`CacheAside::write_as`], decoded as `T`. A
    /// cache entry that does not decode as `T` is a miss (deleted from both tiers); a database
    /// row that does not is [`Error::Decode`].
    pub async fn get_as<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<Typed<T>>, Error> {
        let Some(got) = self.get(key).await? else {
            return Ok(None);
        };
        let why = match decode(&got.row.payload) {
            Ok(value) => return Ok(Some(typed(value, got))),
            Err(why) if got.source == Source::Db => return Err(undecodable::<T>(key, why)),
            Err(why) => why,
        };
        let m = match got.source {
            Source::L2 => &self.metrics.l2,
            _ => &self.metrics.l1,
        };
        m.corrupt.fetch_add(1, Relaxed);
        warn!(key = %key, ty = std::any::type_name::<T>(), error = %why,
            "cache entry does not decode as its type (written by an older one?): a miss");
        self.invalidate_version(key, None).await;
        match self.get(key).await? {
            None => Ok(None),
            Some(got) => decode(&got.row.payload)
                .map(|value| Some(typed(value, got)))
                .map_err(|why| undecodable::<T>(key, why)),
        }
    }
}

fn typed<T>(value: T, got: Got) -> Typed<T> {
    Typed {
        value,
        version: got.row.version,
        source: got.source,
    }
}

fn undecodable<T>(key: &Key, why: String) -> Error {
    Error::Decode {
        key: key.to_string(),
        ty: std::any::type_name::<T>(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::mem::{MemMemcached, MemRedis, MemStore};
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct PostV1 {
        title: String,
        score: i64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct PostV2 {
        title: String,
        score: i64,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Unrelated {
        id: u64,
    }

    fn cache() -> CacheAside<MemRedis, MemMemcached, MemStore, crate::Builtin> {
        let cfg = CacheConfig::default().validate().unwrap();
        let pool = Pool::new(
            Ring::new(&["l2:1"]).unwrap(),
            vec![MemMemcached::default()],
            &cfg,
        );
        CacheAside::new(
            MemRedis::default(),
            pool,
            MemStore::default(),
            crate::Builtin::Versioned,
            cfg,
            "typed",
        )
    }

    #[tokio::test]
    async fn values_round_trip_and_older_structs_still_read() {
        let c = cache();
        let k = Key::new("posts", 1, "7").unwrap();
        let v1 = PostV1 {
            title: "hello".into(),
            score: 3,
        };
        let w = c.write_as(&k, &v1).await.unwrap();
        let got = c.get_as::<PostV1>(&k).await.unwrap().unwrap();
        assert_eq!(
            (got.value, got.version, got.source),
            (v1.clone(), w.version, Source::Db)
        );
        assert_eq!(
            c.get_as::<PostV1>(&k).await.unwrap().unwrap().source,
            Source::L1
        );
        // A reader with a newer struct (a field added with a default) reads the old entry.
        let v2 = c.get_as::<PostV2>(&k).await.unwrap().unwrap();
        assert_eq!((v2.source, v2.value.tags.len()), (Source::L1, 0));
        assert_eq!(v2.value.title, "hello");
        assert!(encode(&v1).unwrap().len() < serde_json::to_vec(&v1).unwrap().len());
    }

    /// An entry that does not decode as `T` is a miss in the cache and an error from the
    /// database, never a panic.
    #[tokio::test]
    async fn an_entry_of_another_type_is_a_miss_and_a_row_of_one_is_an_error() {
        let c = cache();
        let k = Key::new("posts", 1, "8").unwrap();
        c.write_as(&k, &Unrelated { id: 1 }).await.unwrap();
        assert_eq!(
            c.get_as::<Unrelated>(&k).await.unwrap().unwrap().source,
            Source::Db
        );
        // Cached in L1 now, as `Unrelated`; read as a post: the entry is a miss and the
        // database's row is an error that names the key and the type.
        let e = c.get_as::<PostV1>(&k).await.unwrap_err().to_string();
        assert!(e.contains("posts:v1:8") && e.contains("PostV1"), "{e}");
        assert_eq!(c.metrics().l1.corrupt.load(Relaxed), 1);
        // A row the database holds as a post, cached by a reader with a struct of another shape
        // (here raw bytes that are no MessagePack at all): a miss, then the post.
        let p = PostV1 {
            title: "t".into(),
            score: 1,
        };
        let w = c.write_as(&k, &p).await.unwrap();
        let entry = envelope::encode(
            k.as_str(),
            &Entry::Value {
                version: w.version,
                fresh_until_ms: 0,
                payload: b"\xc1 not msgpack".to_vec(),
            },
        );
        c.l1()
            .set(k.as_str(), &entry, 60_000, SetCond::Always)
            .await
            .unwrap();
        let got = c.get_as::<PostV1>(&k).await.unwrap().unwrap();
        assert_eq!((got.value, got.source), (p, Source::Db));
        assert_eq!(c.metrics().l1.corrupt.load(Relaxed), 2);
    }
}
