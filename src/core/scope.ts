/** Which models a registration watches: by name (`models`), by collection (`collections`), or all. */

export class WatchScope {
  /** Models compiled from an instrumented schema, by name (weakly: a model may be dropped). */
  readonly compiledModels = new Map<string, WeakRef<object>>();
  /** Models watched because they write to a watched collection, by name. */
  private readonly watchedByCollection = new Set<string>();

  constructor(
    private readonly models: ReadonlySet<string> | undefined,
    private readonly collections: ReadonlySet<string> | undefined,
  ) {}

  watches(modelName: string | undefined, baseModelName?: string): boolean {
    if (!this.models && !this.collections) return true;
    const named = (name: string | undefined) =>
      name !== undefined && (this.models?.has(name) === true || this.watchedByCollection.has(name));
    return named(modelName) || named(baseModelName);
  }

  watchSharingModel(modelName: string | undefined): void {
    if (modelName !== undefined && (this.models || this.collections)) this.watchedByCollection.add(modelName);
  }

  watchesModel(modelName: string | undefined, baseModelName: string | undefined, collectionName: string | undefined): boolean {
    if (this.watches(modelName, baseModelName)) return true;
    if (modelName === undefined || collectionName === undefined || this.collections?.has(collectionName) !== true) return false;
    this.watchedByCollection.add(modelName);
    return true;
  }

  /** Remembers a compiled model; false when it has no name. */
  compiled(model: object & { modelName?: string }): boolean {
    if (!model.modelName) return false;
    this.compiledModels.set(model.modelName, new WeakRef(model));
    return true;
  }

  modelNames(): string[] {
    return [...this.compiledModels.keys()];
  }
}
