// Package transfer owns image bytes: content-addressed blobs (root image,
// kernel, initrd) each described by BitTorrent metainfo that the catalogue
// keeps; the blob store on a node's disk; an anacrolix/torrent client set up
// for a closed network (no DHT, no public trackers, no UPnP) that fetches
// and seeds every wanted blob; the HTTP tracker, metainfo and web-seed
// endpoints each node serves; and delta sync of a client's local copy.
//
// Every piece is checked against hashes that came from the catalogue, so a
// peer cannot change an image; see DESIGN.md for the choices.
package transfer
