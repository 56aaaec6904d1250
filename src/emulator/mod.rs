//! aep-emulator: a local stand-in for Adobe IMS, Flow Service connections and the streaming inlet.
