/**
 * The Mongoose plugin, and where a registration is composed: options → faults → Datadog sink and
 * recorder → registration → the hooks on each model Mongoose compiles from the schema.
 *
 * Nothing is added to the schema: no method, static, query helper or middleware, because Mongoose
 * treats a schema's own `save` as a reason to drop its built-in save middleware (timestamps,
 * subdocument hooks), and middleware can be skipped by the app (`{ middleware: false }`). Instead,
 * when Mongoose compiles a watched model (the schema's `init` event), hooks/model.ts wraps that
 * model's write entry points.
 */
import type { Schema } from 'mongoose';
import { createFaultReporter } from './core/faults.js';
import { Registration } from './core/registration.js';
import { TripwireConfigError } from './errors.js';
import { instrumentCompiledModel, type ModelLike } from './hooks/model.js';
import { isObject } from './hooks/write-shapes.js';
import { resolveOptions } from './options.js';
import { createRecorder, RECORD_ENV } from './ratchet/recorder.js';
import { createSink } from './report/datadog-sink.js';
import type { ResolvedOptions, TripwireOptions, WriteListener } from './types.js';

function schemaIsCompiled(schema: Schema): boolean {
  // Mongoose adds its id getter plugin (`addIdGetter`, mongoose 8.24 and 9.12 lib/helpers/schema/idGetter.js)
  // while compiling a model (`Schema#_preCompile`, lib/schema.js): a schema that has it belongs to a model
  // compiled before we could watch it.
  const plugins = (schema as unknown as { plugins?: Array<{ fn?: { name?: string } }> }).plugins ?? [];
  return plugins.some((plugin) => plugin.fn?.name === 'addIdGetter');
}

/**
 * True when Mongoose itself is applying `mongoose.plugin(tripwire, options)`: that happens before the
 * model is compiled, and also to child schemas, which carry the id getter from their construction.
 */
function appliedAsGlobalPlugin(schema: Schema, options: TripwireOptions): boolean {
  const base = (schema as unknown as { base?: { plugins?: unknown } }).base;
  const plugins = Array.isArray(base?.plugins) ? (base.plugins as unknown[]) : [];
  return plugins.some((entry) => Array.isArray(entry) && entry[0] === tripwire && entry[1] === options);
}

/** One registration from resolved options: its faults, its listeners, its recorder. */
function compose(options: ResolvedOptions): Registration {
  const listeners: WriteListener[] = [];
  const reportFault = createFaultReporter(options.onError, (fault) => {
    for (const listener of listeners) listener.fault(fault.reason);
  });
  // The sink reads the registration's models lazily (its heartbeat), once the registration exists.
  let registration: Registration | undefined;
  const sink = createSink(options, reportFault, () => registration?.scope.modelNames() ?? []);
  if (sink) listeners.push(sink);
  const recorder = createRecorder(process.env[RECORD_ENV], options.root, reportFault);
  registration = new Registration({ options, reportFault, listeners, statsdTarget: sink?.target.description, recorder });
  return registration;
}

const registrationOfSchema = new WeakMap<object, Registration>();

/** The registration watching a schema. */
export function registrationOf(schema: unknown): Registration | undefined {
  return isObject(schema) ? registrationOfSchema.get(schema) : undefined;
}

const registrationsByOptions = new WeakMap<object, Registration>();
const disabledOptions = new WeakSet<object>();

/**
 * The Mongoose plugin. `schema.plugin(tripwire, { approved: ['src/auth/**'] })` before the model is
 * compiled, or `mongoose.plugin(tripwire, { models: ['AccessToken'], approved: [...] })` before any
 * model is compiled.
 */
export function tripwire(schema: Schema, options: TripwireOptions): void {
  if (!appliedAsGlobalPlugin(schema, options) && schemaIsCompiled(schema)) {
    throw new TripwireConfigError(
      'mongoose-tripwire: the plugin was registered on a schema whose model is already compiled, so it could never see that model. ' +
        'Register it before mongoose.model()/connection.model() is called for this schema.',
    );
  }
  // One registration per options object: `mongoose.plugin` applies the same options to every schema,
  // and they must share one rate limit, one Datadog client and one set of counters.
  let registration = isObject(options) ? registrationsByOptions.get(options) : undefined;
  if (!registration) {
    const resolved = resolveOptions(options);
    if (!resolved.enabled) {
      if (!disabledOptions.has(options)) {
        disabledOptions.add(options);
        process.emitWarning('mongoose-tripwire is disabled (enabled: false): no write is checked or reported', {
          type: 'TripwireWarning',
          code: 'TRIPWIRE_DISABLED',
        });
      }
      return;
    }
    registration = compose(resolved);
    registrationsByOptions.set(options, registration);
  }
  const marked = registrationOfSchema.get(schema);
  if (marked === registration) return;
  if (marked) {
    throw new TripwireConfigError(
      'mongoose-tripwire: the plugin is registered twice on one schema with different options; every write would be reported twice',
    );
  }
  registrationOfSchema.set(schema, registration);
  const judge = registration;
  schema.on('init', function onModelCompiled(model: ModelLike) {
    instrumentCompiledModel(model, judge, onModelCompiled);
  });
}
