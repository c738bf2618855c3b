// The lookout-client package's surface, as the JavaScript has it and as index.d.ts declares
// it, for tests/client_package.rs (which makes the assertions).
//
// LOOKOUT_CLIENT_DIR: a copy of the package to read instead of the installed one (the test
// checks that a method added to the JavaScript alone is caught).
// One JSON line on stdout: the module's exports, and for each exported class the methods of its
// prototype, the fields an instance has once constructed, and the members index.d.ts declares
// (public and private); and a request through each encoding's codec and back.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';

const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

async function main() {
  const dir = process.env.LOOKOUT_CLIENT_DIR
    ?? path.dirname(fileURLToPath(import.meta.resolve('lookout-client/package.json')));
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const entry = process.env.LOOKOUT_CLIENT_DIR
    ? pathToFileURL(path.join(dir, pkg.exports['.'].default)).href
    : 'lookout-client';
  const mod = await import(entry);

  // What the JavaScript has. Instances are made without connecting.
  const samples = {
    LookoutClient: () => new mod.LookoutClient({ url: 'wss://example.invalid/ws', token: 't' }),
    LookoutError: () => new mod.LookoutError('closed', 'client closed'),
  };
  const errorFields = new Set(Object.getOwnPropertyNames(new Error('x')).concat('name', 'cause'));
  const js = {};
  for (const [name, value] of Object.entries(mod)) {
    if (typeof value !== 'function' || !/^class\b/.test(Function.prototype.toString.call(value))) {
      js[name] = { kind: typeof value };
      continue;
    }
    const methods = Object.getOwnPropertyNames(value.prototype).filter((m) => m !== 'constructor');
    const make = samples[name];
    const fields = make
      ? Object.keys(make()).filter((f) => !(value.prototype instanceof Error && errorFields.has(f)))
      : null;
    js[name] = { kind: 'class', methods, fields };
  }

  // What index.d.ts declares.
  const file = path.join(dir, pkg.types);
  const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const has = (node, kind) => (ts.getModifiers(node) ?? []).some((m) => m.kind === kind);
  const dts = {};
  for (const statement of source.statements) {
    if (!has(statement, ts.SyntaxKind.ExportKeyword) || !statement.name) continue;
    const name = statement.name.text;
    if (ts.isClassDeclaration(statement)) {
      const members = { public: [], private: [] };
      for (const member of statement.members) {
        if (!member.name || ts.isConstructorDeclaration(member)) continue;
        const side = has(member, ts.SyntaxKind.PrivateKeyword) ? 'private' : 'public';
        if (!members[side].includes(member.name.text)) members[side].push(member.name.text);
      }
      dts[name] = { kind: 'class', ...members };
    } else if (ts.isFunctionDeclaration(statement) || ts.isVariableStatement(statement)) {
      dts[name] = { kind: 'value' };
    } else {
      dts[name] = { kind: 'type' };
    }
  }
  // MessagePack comes from the package's own vendor/ folder, as in a page from /vendor/.
  const client = samples.LookoutClient();
  const codecs = {};
  for (const encoding of ['json', 'msgpack']) {
    client.options.encoding = encoding;
    const codec = await client.codec();
    const encoded = codec.encode({ type: 'publish', channel: '/topic/x', data: { bytes: new Uint8Array([1, 2]) } });
    // A WebSocket hands binary frames over as an ArrayBuffer of their own.
    const decoded = codec.decode(typeof encoded === 'string' ? encoded : encoded.slice().buffer);
    codecs[encoding] = {
      binary: typeof encoded !== 'string',
      decoded: { ...decoded, data: { bytes: decoded.data.bytes instanceof Uint8Array ? [...decoded.data.bytes] : decoded.data.bytes } },
    };
  }
  emit({ event: 'surface', dir, js, dts, codecs });
}

main().then(
  () => process.exit(0),
  (e) => {
    emit({ event: 'fail', error: String(e?.stack ?? e) });
    process.exit(1);
  },
);
