/** The pure protocol core: vocabulary, errors, request building and answer classification. */

export * from './types';
export * from './errors';
export * from './request';
export * from './answer';
export * from './device-errors';
export * from './device-data';
export * from './gateway-data';
