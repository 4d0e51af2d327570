//! Which domain messages cross nodes in cluster mode: [`remote_messages!`] gives each listed message its
//! [`crate::runtime::Remote`] wire name (its type name) and writes the file's `accept_remote`, which the kind's
//! `Entity::accepts` calls so that the runtime routes those calls to the node serving the actor.

/// `remote_messages! { Kind; mutations: A, B; reads: C; commands: D; }` — every group optional but in this order.
/// The wire name is the type name: renaming a listed message breaks calls between nodes of different versions.
macro_rules! remote_messages {
    (
        $kind:ty;
        $(mutations: $($m:ident),+ $(,)?;)?
        $(reads: $($r:ident),+ $(,)?;)?
        $(commands: $($c:ident),+ $(,)?;)?
    ) => {
        $($(impl $crate::runtime::Remote for $m { const NAME: &'static str = stringify!($m); })+)?
        $($(impl $crate::runtime::Remote for $r { const NAME: &'static str = stringify!($r); })+)?
        $($(impl $crate::runtime::Remote for $c { const NAME: &'static str = stringify!($c); })+)?

        /// Registers this file's messages as callable from other nodes (see `crate::actors::remote`).
        pub(super) fn accept_remote(accepts: &mut $crate::runtime::Accepts<$kind>) {
            $($(accepts.remote_mutation::<$m>();)+)?
            $($(accepts.remote_read::<$r>();)+)?
            $($(accepts.remote_command::<$c>();)+)?
        }
    };
}

pub(crate) use remote_messages;
