/** The part of targaryen's API the RTDB rules tests use (the package ships no types). */
declare module "targaryen" {
  interface Result {
    allowed: boolean;
    info: string;
  }
  interface Database {
    with(options: { debug?: boolean }): Database;
    as(auth: { uid: string } | null): Database;
    read(path: string): Result;
    write(path: string, value: unknown): Result;
    update(path: string, value: object): Result;
  }
  const targaryen: { database(rules: object, data?: object): Database };
  export default targaryen;
}
