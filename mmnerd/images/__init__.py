"""Images: fetch (downloader), validate, hashing (perceptual hashes), index (exact
near-duplicate search over 64-bit hashes).  Submodules are imported on use."""
