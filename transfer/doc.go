// Package transfer will own image bytes: content-addressed blobs described
// by BitTorrent metainfo kept in the catalogue, an anacrolix/torrent client
// configured for a closed network, the tracker every node serves, HTTP web
// seeds and delta sync of a local copy. Nothing is implemented yet; the
// catalogue already stores the image metadata it will serve (issue 3).
package transfer
