//! Typed views of JSON another program printed (yt-dlp here, ffprobe in
//! `src/ffmpeg/probe.rs`), as forgiving as a walk over `serde_json::Value`: a
//! field of an unexpected type reads as absent instead of failing the whole parse.

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, Visitor, value::MapAccessDeserializer},
};

/// A `T` if the value has `T`'s shape; anything else (`null`, another type, or a
/// missing field under `#[serde(default)]`) is read and dropped.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Loose<T> {
    Fits(T),
    Other(IgnoredAny),
}

impl<T> Default for Loose<T> {
    fn default() -> Self {
        Loose::Other(IgnoredAny)
    }
}

impl<T> Loose<T> {
    pub(crate) fn get(self) -> Option<T> {
        match self {
            Loose::Fits(t) => Some(t),
            Loose::Other(_) => None,
        }
    }

    pub(crate) fn as_ref(&self) -> Option<&T> {
        match self {
            Loose::Fits(t) => Some(t),
            Loose::Other(_) => None,
        }
    }
}

impl<T: Default> Loose<Object<T>> {
    /// The object's fields, or all defaults if the value was not an object.
    pub(crate) fn or_default(self) -> T {
        self.get().map(|Object(t)| t).unwrap_or_default()
    }
}

/// A `T` read only from a JSON object. Derived structs also accept an array (fields
/// by position), which would turn e.g. `"format": ["mp4"]` into a format name.
#[derive(Debug)]
pub(crate) struct Object<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}
