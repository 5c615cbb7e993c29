// A real Helia peer for Arena's interop tests, driven by JSON lines on stdin.
//
// Loopback only: it listens on 127.0.0.1, dials nothing but 127.0.0.1 (connection gater), and
// has no bootstrap list, no mDNS, no DHT, no delegated routing: its only block broker is
// bitswap to the peers it is told to dial.
//
// First line on stdout: {"id": peer id, "addrs": [listen multiaddrs]}. Then one reply line per
// command: {"op": "dial", "addr"}, {"op": "add", "path"} (a file, or a directory added with
// its name as the root, as `ipfs add -r` does), {"op": "cat", "cid", "out"} (bytes to a
// file), {"op": "ls", "cid"}, {"op": "stop"}. Errors come back as {"error": message}.
import { createHash } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { createWriteStream, readFileSync, readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { createInterface } from 'node:readline'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bitswap } from '@helia/block-brokers'
import { unixfs } from '@helia/unixfs'
import { Helia } from '@helia/utils'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { createLibp2p } from 'libp2p'
import { CID } from 'multiformats/cid'
import { multiaddr } from '@multiformats/multiaddr'

// Node 20 lacks Promise.withResolvers (Node 22), which it-queue (under libp2p's peer store) calls
Promise.withResolvers ??= function () {
  let resolve, reject
  const promise = new Promise((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}

const loopback = (ma) => ma.toString().startsWith('/ip4/127.0.0.1/')
const datastore = new MemoryDatastore()
const libp2p = await createLibp2p({
  start: false,
  datastore,
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  peerDiscovery: [],
  connectionGater: { denyDialMultiaddr: (ma) => !loopback(ma) },
  services: { identify: identify() }
})
const helia = new Helia({
  libp2p,
  datastore,
  blockstore: new MemoryBlockstore(),
  blockBrokers: [bitswap()],
  routers: []
})
await helia.start()
const fs = unixfs(helia)
// Kubo's defaults, so that both sides compute the same CIDs
const kubo = {
  cidVersion: 0,
  rawLeaves: false,
  chunker: fixedSize({ chunkSize: 262144 }),
  layout: balanced({ maxChildrenPerNode: 174 })
}

function send (obj) { process.stdout.write(JSON.stringify(obj) + '\n') }

function * walk (root, dir) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name)
    const rel = join(root, relative(dir, path))
    if (statSync(path).isDirectory()) {
      yield * walk(rel, path)
    } else {
      yield { path: rel, content: readFileSync(path) }
    }
  }
}

async function run (cmd) {
  const signal = AbortSignal.timeout((cmd.timeout ?? 60) * 1000)
  setMaxListeners(Infinity, signal) // one listener per block being fetched
  switch (cmd.op) {
    case 'dial': {
      const conn = await libp2p.dial(multiaddr(cmd.addr), { signal })
      return { peer: conn.remotePeer.toString() }
    }
    case 'add': {
      if (statSync(cmd.path).isDirectory()) {
        const name = cmd.path.replace(/\/+$/, '').split('/').pop()
        let root
        for await (const entry of fs.addAll(walk(name, cmd.path), kubo)) {
          root = entry.cid
        }
        return { cid: root.toString() }
      }
      const cid = await fs.addBytes(readFileSync(cmd.path), kubo)
      return { cid: cid.toString() }
    }
    case 'cat': {
      const hash = createHash('sha256')
      const out = createWriteStream(cmd.out)
      let size = 0
      for await (const chunk of fs.cat(CID.parse(cmd.cid), { signal, path: cmd.path })) {
        hash.update(chunk)
        size += chunk.length
        if (!out.write(chunk)) await new Promise((resolve) => out.once('drain', resolve))
      }
      await new Promise((resolve) => out.end(resolve))
      return { size, sha256: hash.digest('hex') }
    }
    case 'ls': {
      const entries = []
      for await (const entry of fs.ls(CID.parse(cmd.cid), { signal, path: cmd.path })) {
        entries.push({ name: entry.name, cid: entry.cid.toString(), type: entry.type })
      }
      return { entries }
    }
    case 'stop':
      await helia.stop()
      return { stopped: true }
    default:
      throw new Error(`unknown op ${cmd.op}`)
  }
}

send({ id: libp2p.peerId.toString(), addrs: libp2p.getMultiaddrs().map((ma) => ma.toString()) })
const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  let cmd
  try {
    cmd = JSON.parse(line)
    send(await run(cmd))
  } catch (err) {
    send({ error: `${err.name}: ${err.message}` })
  }
  if (cmd?.op === 'stop') break
}
process.exit(0)
