// A tiny command-line service: prints how long ago a timestamp was.
const ms = require('ms');
const argv = require('minimist')(process.argv.slice(2));
const since = Number(argv.since ?? Date.now());
console.log(`${ms(Date.now() - since, { long: true })} ago`);
