// Drives the official OpenWhisk JavaScript client (npm "openwhisk") against an OpenWhisk API and
// prints, as one JSON object on stdout, what each call returned. tests/test_js_client.py runs it
// against the local platform and checks the answers and the exchanged shapes.
//
//   OW_API_HOST=http://127.0.0.1:3233 OW_AUTH=uuid:key node tests/js/client_check.js
//
// Exit status 0 when every call returned; 1 with {"error": ...} on stdout otherwise.
'use strict'

const openwhisk = require('openwhisk')

const ACTION = 'js-client-hello'
// A Python action: the local platform runs python:* kinds only, and python:3.11 is one the API
// spec's enum lists. It logs one line so that the activation record carries logs.
const CODE = [
  'def main(args):',
  '    print("greeting " + str(args.get("name", "nobody")))',
  '    return {"greeting": "hello " + str(args.get("name", "nobody"))}',
  ''
].join('\n')

// Bounded polling for the non-blocking activation's record: it exists once the run finished.
const FETCH_ATTEMPTS = 100
const FETCH_PAUSE_MS = 100

function pause (ms) {
  return new Promise(resolve => setTimeout(resolve, ms))
}

async function fetchActivation (ow, activationId) {
  let lastError = null
  for (let attempt = 0; attempt < FETCH_ATTEMPTS; attempt++) {
    try {
      return await ow.activations.get({ name: activationId })
    } catch (error) {
      if (error.statusCode !== 404) throw error
      lastError = error
      await pause(FETCH_PAUSE_MS)
    }
  }
  throw new Error(`activation ${activationId} not found after ${FETCH_ATTEMPTS} tries: ${lastError}`)
}

async function main () {
  const apihost = process.env.OW_API_HOST
  const apiKey = process.env.OW_AUTH
  if (!apihost || !apiKey) throw new Error('set OW_API_HOST (http://host:port) and OW_AUTH (uuid:key)')
  // "api" is the full API URL: the client then keeps the scheme it is given (plain HTTP here).
  const ow = openwhisk({ api: `${apihost.replace(/\/$/, '')}/api/v1/`, api_key: apiKey, namespace: '_' })
  const out = {}
  out.created = await ow.actions.create({ name: ACTION, action: CODE, kind: 'python:3.11', overwrite: true })
  out.fetchedAction = await ow.actions.get({ name: ACTION })
  out.blocking = await ow.actions.invoke({ name: ACTION, blocking: true, params: { name: 'blocking' } })
  out.blockingResult = await ow.actions.invoke({ name: ACTION, blocking: true, result: true, params: { name: 'result' } })
  out.nonBlocking = await ow.actions.invoke({ name: ACTION, params: { name: 'non-blocking' } })
  out.fetched = await fetchActivation(ow, out.nonBlocking.activationId)
  out.listed = await ow.activations.list({ name: ACTION, limit: 10 })
  return out
}

main().then(
  out => { process.stdout.write(JSON.stringify(out) + '\n') },
  error => {
    process.stdout.write(JSON.stringify({ error: String(error && error.message ? error.message : error), statusCode: error && error.statusCode }) + '\n')
    process.exitCode = 1
  }
)
