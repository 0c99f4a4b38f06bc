// This module is browser compatible.

/**
 * The paths requests share: an observation keeps its request for its
 * whole life, and 100,000 observations of one resource kept 100,000 copies
 * of its path and segments. `readRequest` takes them from here.
 *
 * @module
 */

/** A path and its segments, as requests share them. */
export interface SharedPath {
  /** `/` and the percent-encoded segments. */
  readonly path: string;
  /** The percent-decoded segments, frozen. */
  readonly segments: readonly string[];
}

/** The root's: `/`, no segments. */
export const ROOT_PATH: SharedPath = Object.freeze({
  path: "/",
  segments: Object.freeze([]) as readonly string[],
});

/** Paths at most in the table; past that, it starts afresh. */
export const MAX_SHARED_PATHS = 256;

const sharedPaths = new Map<string, SharedPath>();

/** How many paths are shared now. */
export function sharedPathCount(): number {
  return sharedPaths.size;
}

/**
 * The shared path for `segments` (percent-decoded Uri-Path values): the
 * same object for every request of a path seen lately.
 *
 * @param segments The segments, as read from the request.
 * @returns The path and a frozen copy of the segments.
 */
export function pathOf(segments: readonly string[]): SharedPath {
  const path = segments.length === 1
    ? "/" + encodeURIComponent(segments[0])
    : "/" + segments.map(encodeURIComponent).join("/");
  let shared = sharedPaths.get(path);
  if (shared === undefined) {
    if (sharedPaths.size >= MAX_SHARED_PATHS) sharedPaths.clear();
    // An exact copy: a pushed-to array keeps room for more.
    shared = { path, segments: Object.freeze(segments.slice()) };
    sharedPaths.set(path, shared);
  }
  return shared;
}
