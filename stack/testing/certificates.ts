// A test CA and a certificate it signs, made with openssl in a folder of
// the caller's, for the TLS checks (coaps+ws:// servers, a rediss:// engine).

/**
 * Makes a test CA (`ca.pem`) and a certificate it signs for localhost and
 * 127.0.0.1 (`server.pem`, `server.key`) in `dir`.
 *
 * @returns The CA's path, the certificate and key as PEM, and the SHA-256
 * of the certificate's public key (which Chromium can be told to trust).
 */
export async function testCertificates(dir: string): Promise<{
  ca: string;
  cert: string;
  key: string;
  spkiHash: string;
}> {
  const run = async (args: string[]) => {
    const out = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(
        `openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
    return out.stdout;
  };
  await run([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=coap test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  ]);
  await run([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=localhost",
  ]);
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  await run([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ]);
  // Chromium trusts one key by the SHA-256 of its SubjectPublicKeyInfo.
  const spki = await run(["x509", "-in", "server.pem", "-pubkey", "-noout"]);
  await Deno.writeFile(`${dir}/server.pub`, spki);
  const der = await run([
    "pkey",
    "-pubin",
    "-in",
    "server.pub",
    "-outform",
    "der",
  ]);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", der));
  return {
    ca: `${dir}/ca.pem`,
    cert: await Deno.readTextFile(`${dir}/server.pem`),
    key: await Deno.readTextFile(`${dir}/server.key`),
    spkiHash: btoa(String.fromCharCode(...hash)),
  };
}
