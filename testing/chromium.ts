// How this project starts headless Chromium, shared by the suite's browser
// runner and the CoAP interop checks: no sandbox (root), no GPU, and none
// of the background connections a closed network refuses.

/** Chromium's arguments for a page at `url` with a fresh `profile` folder. */
export function chromiumArgs(profile: string, url: string): string[] {
  return [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    `--user-data-dir=${profile}`,
    url,
  ];
}
