// Aedes, the broker many Node-RED users run, on 127.0.0.1 (tests/brokers.py starts it).
// Usage: node aedes_broker.mjs PORT. Prints one JSON line {"ready": true, "port", "version"} once
// it listens; exits on SIGTERM or SIGINT after closing the broker and the listening socket.
import net from 'node:net'
import { readFileSync } from 'node:fs'
import { Aedes } from 'aedes'

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node aedes_broker.mjs PORT')
  process.exit(2)
}
// the package's exports hide its package.json from require(): read the installed copy
const { version } = JSON.parse(
  readFileSync(new URL('./node_modules/aedes/package.json', import.meta.url), 'utf8'))

const broker = await Aedes.createBroker()
const server = net.createServer(broker.handle)
server.on('error', (err) => {
  console.error(`aedes: ${err.message}`)
  process.exit(1)
})
server.listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ ready: true, port, version }))
})

function shutdown () {
  server.close()
  broker.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
