/** This package's version: copies of one version share one API (index.ts). Checked against package.json by the suite. */
export const VERSION = '0.1.0';
