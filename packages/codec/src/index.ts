export { decode, DECODE_BYTES_MAX, encode, packr } from './packr.js';
